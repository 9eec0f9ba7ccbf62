"""Cosign storage format, DSSE and verification decisions with real ECDSA keys."""

from __future__ import annotations

import base64
import json

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.cosign_format import (
    CYCLONEDX_PREDICATE,
    DSSE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SLSA_PROVENANCE_V1,
    Layer,
    ProvenanceInputs,
    artifact_config,
    artifact_manifest,
    dsse_envelope,
    in_toto_statement,
    pae,
    sha256_digest,
    signature_tag,
    simple_signing_payload,
    slsa_provenance,
)
from medianest_delivery.release.signing_keys import (
    generate_key_pair,
    key_id,
    load_private_key,
    load_public_key,
    sign_bytes,
)
from medianest_delivery.release.verification import verify_image_evidence

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "127.0.0.1:5000/medianest/backend"


@pytest.fixture(scope="module")
def keys() -> tuple[object, object, bytes]:
    pair = generate_key_pair(b"pw")
    return load_private_key(pair.private_pem, b"pw"), load_public_key(pair.public_pem), pair.public_pem


def signature_layer(private: object, digest: str = DIGEST, repo: str = REPO) -> Layer:
    payload = simple_signing_payload(repo, digest)
    sig = base64.b64encode(sign_bytes(private, payload)).decode()  # type: ignore[arg-type]
    return Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: sig})


def attestation_layer(private: object, predicate_type: str, digest: str = DIGEST) -> Layer:
    statement = in_toto_statement(REPO, digest, predicate_type, {"k": "v"})
    envelope = dsse_envelope(IN_TOTO_PAYLOAD_TYPE, statement, sign_bytes(private, pae(IN_TOTO_PAYLOAD_TYPE, statement)))  # type: ignore[arg-type]
    return Layer(DSSE_MEDIA_TYPE, json.dumps(envelope).encode(), {"predicateType": predicate_type})


def test_signature_tag_follows_cosign_scheme() -> None:
    assert signature_tag(DIGEST, "sig") == "sha256-" + "ab" * 32 + ".sig"
    with pytest.raises(ValueError, match="not a digest"):
        signature_tag("latest", "sig")


def test_simple_signing_payload_matches_cosign_layout() -> None:
    payload = json.loads(simple_signing_payload(REPO, DIGEST))
    assert payload == {
        "critical": {
            "identity": {"docker-reference": REPO},
            "image": {"docker-manifest-digest": DIGEST},
            "type": "cosign container image signature",
        },
        "optional": None,
    }


def test_pae_is_the_dsse_v1_encoding() -> None:
    assert pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def test_statement_and_provenance_shape() -> None:
    inputs = ProvenanceInputs(
        "https://x/y", "f" * 40, "backend/Dockerfile", "backend", "1.0", DIGEST, "builder", "run", "t0", "t1"
    )
    statement = json.loads(in_toto_statement(REPO, DIGEST, SLSA_PROVENANCE_V1, slsa_provenance(inputs)))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": REPO, "digest": {"sha256": "ab" * 32}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"]["digest"] == {"gitCommit": "f" * 40}
    assert statement["predicate"]["runDetails"]["builder"] == {"id": "builder"}


def test_artifact_manifest_references_config_and_layers_by_digest() -> None:
    layer = Layer(SIMPLE_SIGNING_MEDIA_TYPE, b"payload", {SIGNATURE_ANNOTATION: "c2ln"})
    config = artifact_config([layer])
    manifest = json.loads(artifact_manifest(config, [layer]))
    assert manifest["config"]["digest"] == sha256_digest(config)
    assert manifest["layers"][0] == {
        "mediaType": SIMPLE_SIGNING_MEDIA_TYPE,
        "size": 7,
        "digest": sha256_digest(b"payload"),
        "annotations": {SIGNATURE_ANNOTATION: "c2ln"},
    }
    assert json.loads(config)["rootfs"]["diff_ids"] == [sha256_digest(b"payload")]


def test_valid_evidence_verifies(keys: tuple[object, object, bytes]) -> None:
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
    assert any(problem in p for p in report.problems), report.problems


def test_wrong_password_is_a_clear_error() -> None:
    pair = generate_key_pair(b"right")
    with pytest.raises(ConfigError, match="wrong password"):
        load_private_key(pair.private_pem, b"wrong")


def test_key_id_is_stable_and_short(keys: tuple[object, object, bytes]) -> None:
    _, _, public_pem = keys
    assert key_id(public_pem) == key_id(public_pem)
    assert len(key_id(public_pem)) == 16
