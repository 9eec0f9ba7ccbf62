"""Validation of image references, image tags and git refs before they reach any tool."""

from __future__ import annotations

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.refs import parse_image_reference, require_git_ref, require_tag, tag_from_version

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/medianest/backend:1.0", "127.0.0.1:5000", "medianest/backend", "1.0", None),
        (f"ghcr.io/org/app@{DIGEST}", "ghcr.io", "org/app", None, DIGEST),
        (f"localhost:5000/a/b/c:v2@{DIGEST}", "localhost:5000", "a/b/c", "v2", DIGEST),
    ],
)
def test_valid_image_references(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    """A reference splits into registry, repository, tag and digest, and prints back as the same text."""
    ref = parse_image_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "backend",
        "127.0.0.1:5000/Upper/case",
        "ghcr.io/org/app@sha256:short",
        "ghcr.io/org/app:bad tag",
        "ghcr.io/a;rm -rf/b",
    ],
)
def test_invalid_image_references_name_the_input(text: str) -> None:
    """No registry, upper case, a short digest, a space or a shell metacharacter is an invalid image reference."""
    with pytest.raises(ConfigError, match="invalid image reference"):
        parse_image_reference(text)


@pytest.mark.parametrize(
    "ref",
    ["main; rm -rf /", "feature/$(whoami)", "a`id`", "-x", "x..y", "branch name", "a|b", "x&&y", "tag.lock", "a>b"],
)
def test_git_refs_with_shell_metacharacters_are_rejected(ref: str) -> None:
    """Shell metacharacters, spaces, a leading '-', '..' and a .lock suffix make an invalid git ref."""
    with pytest.raises(ConfigError, match="invalid git ref"):
        require_git_ref(ref)


@pytest.mark.parametrize("ref", ["main", "feature/canary-analysis", "v1.2.3", "release_2026.11"])
def test_ordinary_git_refs_pass(ref: str) -> None:
    """Ordinary branch and tag names are returned unchanged."""
    assert require_git_ref(ref) == ref


def test_tags() -> None:
    """A version's '+' becomes '-' in its image tag; a tag starting with '-' is rejected."""
    assert tag_from_version("1.2.0+build.5") == "1.2.0-build.5"
    with pytest.raises(ConfigError, match="invalid image tag"):
        require_tag("-bad")
