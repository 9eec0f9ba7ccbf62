"""Verification decisions on a signed image's evidence, with real ECDSA keys and tampered copies."""

from __future__ import annotations

import base64
import json

import pytest

from medianest_delivery.release.cosign_format import (
    CYCLONEDX_PREDICATE,
    DSSE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SLSA_PROVENANCE_V1,
    Layer,
    dsse_envelope,
    in_toto_statement,
    pae,
    simple_signing_payload,
)
from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key, sign_bytes
from medianest_delivery.release.verification import verify_image_evidence
from medianest_delivery.release.violations import Rule

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "127.0.0.1:5000/medianest/backend"


def signature_layer(private: object, digest: str = DIGEST, repo: str = REPO) -> Layer:
    payload = simple_signing_payload(repo, digest)
    sig = base64.b64encode(sign_bytes(private, payload)).decode()  # type: ignore[arg-type]
    return Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: sig})


def attestation_layer(private: object, predicate_type: str, digest: str = DIGEST) -> Layer:
    statement = in_toto_statement(REPO, digest, predicate_type, {"k": "v"})
    envelope = dsse_envelope(IN_TOTO_PAYLOAD_TYPE, statement, sign_bytes(private, pae(IN_TOTO_PAYLOAD_TYPE, statement)))  # type: ignore[arg-type]
    return Layer(DSSE_MEDIA_TYPE, json.dumps(envelope).encode(), {"predicateType": predicate_type})


def test_valid_evidence_verifies(keys: tuple[object, object, bytes]) -> None:
    """A signature and both required attestations by the release key verify: one valid signature, no problems."""
    private, public, _ = keys
    report = verify_image_evidence(
        DIGEST,
        REPO,
        [signature_layer(private)],
        [attestation_layer(private, SLSA_PROVENANCE_V1), attestation_layer(private, CYCLONEDX_PREDICATE)],
        public,  # type: ignore[arg-type]
        [SLSA_PROVENANCE_V1, CYCLONEDX_PREDICATE],
    )
    assert report.ok, report.problems
    assert report.valid_signatures == 1


def tampered_payload(private: object) -> Layer:
    layer = signature_layer(private)
    return Layer(layer.media_type, layer.data.replace(b"ab", b"ac", 1), layer.annotations)


def tampered_envelope(private: object) -> Layer:
    layer = attestation_layer(private, SLSA_PROVENANCE_V1)
    envelope = json.loads(layer.data)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"] = {"k": "forged"}
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    return Layer(layer.media_type, json.dumps(envelope).encode(), layer.annotations)


@pytest.mark.parametrize(
    ("name", "make_sig", "make_att", "problem"),
    [
        (
            "no signature",
            lambda p, o: [],
            lambda p, o: [attestation_layer(p, SLSA_PROVENANCE_V1)],
            "no signature found",
        ),
        (
            "signed by another key",
            lambda p, o: [signature_layer(o)],
            lambda p, o: [attestation_layer(p, SLSA_PROVENANCE_V1)],
            "does not verify",
        ),
        (
            "payload edited",
            lambda p, o: [tampered_payload(p)],
            lambda p, o: [attestation_layer(p, SLSA_PROVENANCE_V1)],
            "does not verify",
        ),
        (
            "signs another digest",
            lambda p, o: [signature_layer(p, OTHER)],
            lambda p, o: [attestation_layer(p, SLSA_PROVENANCE_V1)],
            f"signs {OTHER}",
        ),
        (
            "signs another repository",
            lambda p, o: [signature_layer(p, repo="evil/repo")],
            lambda p, o: [attestation_layer(p, SLSA_PROVENANCE_V1)],
            "repository evil/repo",
        ),
        (
            "attestation edited",
            lambda p, o: [signature_layer(p)],
            lambda p, o: [tampered_envelope(p)],
            "DSSE signature does not verify",
        ),
        (
            "attestation for other digest",
            lambda p, o: [signature_layer(p)],
            lambda p, o: [attestation_layer(p, SLSA_PROVENANCE_V1, OTHER)],
            "subject is not",
        ),
        (
            "provenance missing",
            lambda p, o: [signature_layer(p)],
            lambda p, o: [],
            "required attestation https://slsa.dev/provenance/v1 missing",
        ),
    ],
)
def test_tampering_is_detected(
    keys: tuple[object, object, bytes], name: str, make_sig: object, make_att: object, problem: str
) -> None:
    """A missing, foreign, edited or misdirected signature or attestation fails verification with its problem named."""
    private, public, _ = keys
    other = load_private_key(generate_key_pair(b"").private_pem, b"")
    report = verify_image_evidence(
        DIGEST,
        REPO,
        make_sig(private, other),
        make_att(private, other),
        public,
        [SLSA_PROVENANCE_V1],  # type: ignore[operator,arg-type]
    )
    assert not report.ok
    assert any(problem in str(p) for p in report.problems), report.problems


def test_a_co_signature_by_another_key_does_not_spoil_ours(keys: tuple[object, object, bytes]) -> None:
    """Like cosign: our signature plus someone else's verifies (the other is ignored, listed, and trusted for
    nothing); an attestation by another key beside ours is ignored the same way."""
    private, public, _ = keys
    other = load_private_key(generate_key_pair(b"").private_pem, b"")
    report = verify_image_evidence(
        DIGEST,
        REPO,
        [signature_layer(other), signature_layer(private)],  # type: ignore[arg-type]
        [attestation_layer(other, SLSA_PROVENANCE_V1), attestation_layer(private, SLSA_PROVENANCE_V1)],  # type: ignore[arg-type]
        public,  # type: ignore[arg-type]
        [SLSA_PROVENANCE_V1],
    )
    assert report.ok, report.problems
    assert report.valid_signatures == 1
    assert len(report.ignored) == 2


def test_a_foreign_attestation_never_satisfies_a_required_predicate(keys: tuple[object, object, bytes]) -> None:
    """Provenance signed by another key is not provenance: the required predicate is still missing."""
    private, public, _ = keys
    other = load_private_key(generate_key_pair(b"").private_pem, b"")
    report = verify_image_evidence(
        DIGEST,
        REPO,
        [signature_layer(private)],  # type: ignore[arg-type]
        [attestation_layer(other, SLSA_PROVENANCE_V1)],  # type: ignore[arg-type]
        public,  # type: ignore[arg-type]
        [SLSA_PROVENANCE_V1],
    )
    assert not report.ok
    assert Rule.PROVENANCE_PRESENT in [p.rule for p in report.problems], report.problems
