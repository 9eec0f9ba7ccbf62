"""Cosign's storage format: signature tags, payloads, DSSE, in-toto statements and OCI artifacts."""

from __future__ import annotations

import json

import pytest

from medianest_delivery.release.cosign_format import (
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SLSA_PROVENANCE_V1,
    Layer,
    ProvenanceInputs,
    artifact_config,
    artifact_manifest,
    in_toto_statement,
    pae,
    sha256_digest,
    signature_tag,
    simple_signing_payload,
    slsa_provenance,
)

DIGEST = "sha256:" + "ab" * 32
REPO = "127.0.0.1:5000/medianest/backend"


def test_signature_tag_follows_cosign_scheme() -> None:
    """`sha256:<hex>` becomes the tag `sha256-<hex>.sig`; a tag instead of a digest is a ValueError."""
    assert signature_tag(DIGEST, "sig") == "sha256-" + "ab" * 32 + ".sig"
    with pytest.raises(ValueError, match="not a digest"):
        signature_tag("latest", "sig")


def test_simple_signing_payload_matches_cosign_layout() -> None:
    """The signed payload is cosign's simple-signing JSON naming the repository and the manifest digest."""
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
    """PAE is `DSSEv1 <len> <type> <len> <body>`, as the DSSE v1 spec defines it."""
    assert pae("application/vnd.in-toto+json", b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def test_statement_and_provenance_shape() -> None:
    """An in-toto v1 statement names the image as subject; SLSA provenance records the commit and the builder."""
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
    """The OCI manifest points at its config and layers by sha256, layers keep annotations, diff_ids match."""
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


def test_signing_appends_and_never_duplicates() -> None:
    """Our layers are added after what is attached already (co-signatures survive); signing twice adds nothing."""
    from medianest_delivery.release.cosign_format import Layer, append_layers

    theirs = Layer(
        "application/vnd.dev.cosign.simplesigning.v1+json", b"payload", {"dev.cosignproject.cosign/signature": "theirs"}
    )
    ours = Layer(
        "application/vnd.dev.cosign.simplesigning.v1+json", b"payload", {"dev.cosignproject.cosign/signature": "ours"}
    )
    once = append_layers([theirs], [ours])
    assert once == [theirs, ours]
    assert append_layers(once, [ours]) == [theirs, ours]
    assert append_layers([], [ours]) == [ours]
