"""What a deploy trusts: signing keys from configuration, never from the release it is judging.

A release manifest is signed at publish time over its own canonical JSON (every
field but the signature). Before anything is deployed, the manifest's signature
must verify with one of the configured trusted keys valid at that moment, and
the images are then verified with that same key. The public key and registry
written in the manifest are data to cross-check, never a trust anchor: an
attacker who edits a manifest can put any key there.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from medianest_delivery.errors import ConfigError, VerificationError
from medianest_delivery.release.manifest import ManifestSignature, ReleaseManifest
from medianest_delivery.release.signing_keys import key_id, load_public_key, sign_bytes, verify_bytes


@dataclass(frozen=True)
class TrustedKey:
    """A public key a deploy accepts, within its validity window (rotation: old and new overlap)."""

    public_key_pem: str
    name: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None

    @property
    def key_id(self) -> str:
        return key_id(self.public_key_pem.encode())

    def valid_at(self, moment: dt.datetime) -> bool:
        """Within the window; a window given without a timezone is UTC."""
        now = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
        not_before, not_after = _utc(self.not_before), _utc(self.not_after)
        return (not_before is None or not_before <= now) and (not_after is None or now < not_after)


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=dt.UTC)


def manifest_payload(manifest: ReleaseManifest) -> bytes:
    """The bytes a manifest signature covers: canonical JSON of every field except the signature itself.

    Fields at their default are left out, so adding an optional field later does not change (and break) the
    payload of manifests signed before it existed.
    """
    data = manifest.model_dump(mode="json", by_alias=True, exclude={"manifest_signature"}, exclude_defaults=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def sign_manifest(manifest: ReleaseManifest, key: ec.EllipticCurvePrivateKey, public_key_pem: str) -> ReleaseManifest:
    """The manifest with its signature by `key` (whose public half is `public_key_pem`)."""
    signature = base64.b64encode(sign_bytes(key, manifest_payload(manifest))).decode()
    return manifest.model_copy(
        update={"manifest_signature": ManifestSignature(key_id=key_id(public_key_pem.encode()), signature=signature)}
    )


def verify_manifest(manifest: ReleaseManifest, trusted: list[TrustedKey], moment: dt.datetime) -> TrustedKey:
    """The trusted key that signed this manifest; `VerificationError` naming the problem otherwise.

    >>> verify_manifest(ReleaseManifest.model_construct(version="1.0.0", manifest_signature=None), [], dt.datetime.now(dt.UTC))
    Traceback (most recent call last):
    ...
    medianest_delivery.errors.VerificationError: release 1.0.0 is not signed: nothing to trust (publish it again with build-and-publish)
    """
    if manifest.manifest_signature is None:
        raise VerificationError(
            f"release {manifest.version} is not signed: nothing to trust (publish it again with build-and-publish)"
        )
    if not trusted:
        raise VerificationError("no trusted keys are configured: a deploy needs at least one (TrustedSigners block)")
    valid = [k for k in trusted if k.valid_at(moment)]
    if not valid:
        raise VerificationError(f"none of the {len(trusted)} trusted keys is valid at {moment.isoformat()}")
    try:
        signature = base64.b64decode(manifest.manifest_signature.signature, validate=True)
    except ValueError as exc:
        raise VerificationError(f"release {manifest.version}: manifest signature is not base64") from exc
    payload = manifest_payload(manifest)
    unreadable: list[str] = []
    for key in valid:
        try:
            public = load_public_key(key.public_key_pem.encode())
        except ConfigError:
            unreadable.append(key.name or "unnamed")
            continue
        if verify_bytes(public, payload, signature):
            return key
    expired = [k.name or k.key_id for k in trusted if not k.valid_at(moment)]
    raise VerificationError(
        f"release {manifest.version}: manifest signature (key {manifest.manifest_signature.key_id}) does not verify "
        f"with any trusted key valid now ({', '.join(k.name or k.key_id for k in valid)})"
        + (f"; outside their window: {', '.join(expired)}" if expired else "")
        + (f"; not a PEM public key: {', '.join(unreadable)}" if unreadable else "")
        + " — the manifest was edited, or signed by a key that is not trusted"
    )


def check_registry(manifest: ReleaseManifest, configured_host: str) -> None:
    """Images must live in the configured registry: credentials never go to a host a manifest names."""
    if manifest.registry != configured_host:
        raise VerificationError(
            f"release {manifest.version} names registry {manifest.registry!r}; the configured registry is "
            f"{configured_host!r}: refusing (credentials only go to the configured registry)"
        )
    for image in manifest.images:
        if not image.repository.startswith(f"{configured_host}/"):
            raise VerificationError(f"image {image.repository} is not in the configured registry {configured_host}")


def is_loopback_host(host: str) -> bool:
    """`127.0.0.1:5000`, `[::1]:5000`, `localhost`: the only registries plain HTTP is allowed for by default.

    >>> [is_loopback_host(h) for h in ("127.0.0.1:5000", "[::1]:5000", "localhost", "ghcr.io", "192.0.2.1:5000")]
    [True, True, True, False, False]
    """
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.split(":", 1)[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
