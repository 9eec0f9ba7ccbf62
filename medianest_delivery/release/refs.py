"""Image references, tags and git refs: validated before they reach any tool."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medianest_delivery.errors import ConfigError

# distribution/reference grammar, simplified to what registries accept.
_HOST = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"sha256:[a-f0-9]{64}"
_REFERENCE = re.compile(
    rf"^(?P<registry>{_HOST})/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
_TAG_RE = re.compile(rf"^{_TAG}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")
# Git allows more, but nothing outside this set belongs in a branch name we ship.
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_image_reference(text: str) -> ImageReference:
    """Parse ``host[:port]/repo[:tag][@sha256:...]``; the registry host is required."""
    match = _REFERENCE.match(text or "")
    if not match:
        raise ConfigError(f"invalid image reference {text!r}: expected registry/repository[:tag][@sha256:<64 hex>]")
    return ImageReference(match["registry"], match["repository"], match["tag"], match["digest"])


def require_tag(tag: str) -> str:
    if not _TAG_RE.match(tag):
        raise ConfigError(f"invalid image tag {tag!r}: use letters, digits, '_', '.', '-' (max 128)")
    return tag


def require_digest(digest: str) -> str:
    if not _DIGEST_RE.match(digest or ""):
        raise ConfigError(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex>")
    return digest


def require_git_ref(ref: str) -> str:
    """Reject refs with shell metacharacters, spaces or option-like prefixes."""
    if not _GIT_REF.match(ref or "") or ".." in ref or ref.endswith((".lock", "/", ".")):
        raise ConfigError(
            f"invalid git ref {ref!r}: only letters, digits and . _ / - are allowed "
            "(no spaces, shell metacharacters, '..' or leading '-')"
        )
    return ref


def tag_from_version(version: str) -> str:
    """A version like ``1.2.0+build.5`` becomes the tag ``1.2.0-build.5``."""
    return require_tag(version.replace("+", "-"))
