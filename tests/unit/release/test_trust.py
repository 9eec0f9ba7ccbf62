"""What a deploy trusts: manifest signatures against configured keys with validity windows, the configured registry."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.errors import VerificationError
from medianest_delivery.release.manifest import ReleaseImage, ReleaseManifest, ScanSummary
from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key
from medianest_delivery.release.trust import (
    TrustedKey,
    check_registry,
    is_loopback_host,
    sign_manifest,
    verify_manifest,
)

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def key_pair() -> tuple[object, str]:
    pair = generate_key_pair(b"")
    return load_private_key(pair.private_pem, b""), pair.public_pem.decode()


OURS, OURS_PUB = key_pair()
THEIRS, THEIRS_PUB = key_pair()


def manifest(registry: str = "127.0.0.1:5000", public_key_pem: str = "") -> ReleaseManifest:
    return ReleaseManifest(
        app="medianest",
        version="1.2.3",
        git_sha="a" * 40,
        git_commit_time="2026-11-26T00:00:00+00:00",
        created="2026-11-26T00:00:00+00:00",
        registry=registry,
        public_key_pem=public_key_pem,
        images=[
            ReleaseImage(
                component="backend",
                repository=f"{registry}/medianest/backend",
                digest="sha256:" + "1" * 64,
                tags=["1.2.3"],
            )
        ],
        scan=ScanSummary(outcome="pass"),
    )


def test_a_manifest_signed_by_a_trusted_key_verifies() -> None:
    """Signed at publish time, verified at deploy time with the configured key: that key is returned."""
    signed = sign_manifest(manifest(), OURS, OURS_PUB)  # type: ignore[arg-type]
    assert verify_manifest(signed, [TrustedKey(OURS_PUB, "ci")], NOW).name == "ci"


@pytest.mark.parametrize(
    ("name", "make", "trusted", "problem"),
    [
        ("unsigned", lambda: manifest(), [TrustedKey(OURS_PUB)], "is not signed"),
        (
            "names its own key (the attack)",
            lambda: sign_manifest(manifest(public_key_pem=THEIRS_PUB), THEIRS, THEIRS_PUB),  # type: ignore[arg-type]
            [TrustedKey(OURS_PUB)],
            "does not verify with any trusted key",
        ),
        (
            "edited after signing",
            lambda: sign_manifest(manifest(), OURS, OURS_PUB).model_copy(update={"version": "9.9.9"}),  # type: ignore[arg-type]
            [TrustedKey(OURS_PUB)],
            "does not verify",
        ),
        (
            "image digest swapped after signing",
            lambda: _swap_digest(sign_manifest(manifest(), OURS, OURS_PUB)),  # type: ignore[arg-type]
            [TrustedKey(OURS_PUB)],
            "does not verify",
        ),
        ("no trusted keys configured", lambda: sign_manifest(manifest(), OURS, OURS_PUB), [], "no trusted keys"),  # type: ignore[arg-type]
        (
            "key expired",
            lambda: sign_manifest(manifest(), OURS, OURS_PUB),  # type: ignore[arg-type]
            [TrustedKey(OURS_PUB, "old", not_after=NOW - HOUR)],
            "none of the 1 trusted keys is valid",
        ),
        (
            "key not yet valid",
            lambda: sign_manifest(manifest(), OURS, OURS_PUB),  # type: ignore[arg-type]
            [TrustedKey(OURS_PUB, "future", not_before=NOW + HOUR)],
            "none of the 1 trusted keys is valid",
        ),
        (
            "signed by the retired key during rotation",
            lambda: sign_manifest(manifest(), THEIRS, THEIRS_PUB),  # type: ignore[arg-type]
            [TrustedKey(THEIRS_PUB, "retired", not_after=NOW - HOUR), TrustedKey(OURS_PUB, "new")],
            "outside their window: retired",
        ),
    ],
)
def test_untrusted_manifests_are_refused_with_the_reason(
    name: str, make: object, trusted: list[TrustedKey], problem: str
) -> None:
    """Every way a manifest can fail to be trusted is refused, and the message names which."""
    with pytest.raises(VerificationError, match=problem):
        verify_manifest(make(), trusted, NOW)  # type: ignore[operator]


def _swap_digest(signed: ReleaseManifest) -> ReleaseManifest:
    images = [signed.images[0].model_copy(update={"digest": "sha256:" + "2" * 64})]
    return signed.model_copy(update={"images": images})


def test_rotation_overlap_accepts_both_keys() -> None:
    """During a rotation window both the old and the new key are trusted."""
    window = [TrustedKey(THEIRS_PUB, "old", not_after=NOW + HOUR), TrustedKey(OURS_PUB, "new", not_before=NOW - HOUR)]
    for key, pub in ((THEIRS, THEIRS_PUB), (OURS, OURS_PUB)):
        assert verify_manifest(sign_manifest(manifest(), key, pub), window, NOW).public_key_pem == pub  # type: ignore[arg-type]


def test_registry_comes_from_configuration() -> None:
    """A manifest naming another registry is refused before any request: credentials go only to the configured one."""
    with pytest.raises(VerificationError, match=r"names registry 'evil\.example:5000'"):
        check_registry(manifest(registry="evil.example:5000"), "127.0.0.1:5000")
    check_registry(manifest(), "127.0.0.1:5000")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1:5000", True), ("127.0.0.2", True), ("[::1]:5000", True), ("localhost:5000", True), ("ghcr.io", False)],
)
def test_plain_http_only_for_loopback(host: str, loopback: bool) -> None:
    """TLS is the default for every registry that is not on this machine."""
    assert is_loopback_host(host) is loopback


def test_a_window_without_timezone_is_utc_not_a_crash() -> None:
    """A block's not_after typed without a timezone is read as UTC (it used to raise TypeError on every deploy)."""
    signed = sign_manifest(manifest(), OURS, OURS_PUB)  # type: ignore[arg-type]
    naive_future = (NOW + HOUR).replace(tzinfo=None)
    assert verify_manifest(signed, [TrustedKey(OURS_PUB, "k", not_after=naive_future)], NOW).name == "k"
    with pytest.raises(VerificationError, match="none of the 1 trusted keys is valid"):
        verify_manifest(signed, [TrustedKey(OURS_PUB, "k", not_after=(NOW - HOUR).replace(tzinfo=None))], NOW)


def test_a_malformed_trusted_key_does_not_hide_a_good_one() -> None:
    """One broken PEM among the trusted keys is reported, and the next key is still tried."""
    signed = sign_manifest(manifest(), OURS, OURS_PUB)  # type: ignore[arg-type]
    assert (
        verify_manifest(signed, [TrustedKey("not a pem", "broken"), TrustedKey(OURS_PUB, "good")], NOW).name == "good"
    )
    with pytest.raises(VerificationError, match="not a PEM public key: broken"):
        verify_manifest(signed, [TrustedKey("not a pem", "broken")], NOW)
