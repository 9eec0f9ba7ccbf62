"""Cosign's storage format, in-toto statements and DSSE envelopes. Pure functions.

Cosign stores, for an image ``repo@sha256:abc``:
- tag ``sha256-abc.sig``: an OCI manifest whose layers are simple-signing
  payloads, each annotated with ``dev.cosignproject.cosign/signature`` (base64
  ECDSA-P256/SHA-256 DER signature of the payload bytes);
- tag ``sha256-abc.att``: layers that are DSSE envelopes of in-toto statements;
- tag ``sha256-abc.sbom``: the SBOM documents (``cosign attach sbom``).
Writing these exactly lets ``cosign verify --key`` and ``cosign verify-attestation``
accept what this project signs without a cosign binary.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

SIMPLE_SIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
OCI_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
CYCLONEDX_PREDICATE = "https://cyclonedx.org/bom"
SPDX_PREDICATE = "https://spdx.dev/Document"
# cosign's predicate for scan results (`cosign attest --type vuln`).
SCAN_PREDICATE = "https://cosign.sigstore.dev/attestation/vuln/v1"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
SPDX_MEDIA_TYPE = "text/spdx+json"
BUILD_TYPE = "https://medianest.dev/delivery/build-and-publish/v1"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signature_tag(digest: str, suffix: str) -> str:
    """``sha256:abc`` and ``sig`` give ``sha256-abc.sig``, cosign's tag scheme."""
    algorithm, _, hex_part = digest.partition(":")
    if not hex_part:
        raise ValueError(f"{digest!r} is not a digest of the form algorithm:hex")
    return f"{algorithm}-{hex_part}.{suffix}"


def simple_signing_payload(docker_reference: str, digest: str) -> bytes:
    """The payload cosign signs: it binds the repository to the manifest digest."""
    payload = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed.

    >>> pae("t", b"ab")
    b'DSSEv1 1 t 2 ab'
    """
    type_bytes = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def dsse_envelope(payload_type: str, payload: bytes, signature: bytes, keyid: str = "") -> dict[str, Any]:
    return {
        "payloadType": payload_type,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(signature).decode()}],
    }


def in_toto_statement(name: str, digest: str, predicate_type: str, predicate: dict[str, Any]) -> bytes:
    algorithm, _, hex_part = digest.partition(":")
    statement = {
        "_type": IN_TOTO_STATEMENT_V1,
        "subject": [{"name": name, "digest": {algorithm: hex_part}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(statement, separators=(",", ":")).encode()


@dataclass(frozen=True)
class ProvenanceInputs:
    """What SLSA v1 provenance records about one image build."""

    source_uri: str
    git_sha: str
    dockerfile: str
    component: str
    version: str
    base_image_digest: str
    builder_id: str
    invocation_id: str
    started_on: str
    finished_on: str
    # The ref the build was asked for, fully qualified (refs/heads/main), or HEAD when detached.
    source_ref: str | None = None
    # Built from a working tree with uncommitted changes: the commit alone does not describe the image.
    source_dirty: bool = False


def slsa_provenance(inputs: ProvenanceInputs) -> dict[str, Any]:
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": {
                    "uri": inputs.source_uri,
                    "digest": {"gitCommit": inputs.git_sha},
                    **({"ref": inputs.source_ref} if inputs.source_ref else {}),
                    **({"dirty": True} if inputs.source_dirty else {}),
                },
                "component": inputs.component,
                "dockerfile": inputs.dockerfile,
                "version": inputs.version,
            },
            "internalParameters": {},
            "resolvedDependencies": [
                {"uri": f"git+{inputs.source_uri}@{inputs.git_sha}", "digest": {"gitCommit": inputs.git_sha}},
                {
                    "uri": "oci://base-image",
                    "digest": {"sha256": inputs.base_image_digest.removeprefix("sha256:")},
                },
            ],
        },
        "runDetails": {
            "builder": {"id": inputs.builder_id},
            "metadata": {
                "invocationId": inputs.invocation_id,
                "startedOn": inputs.started_on,
                "finishedOn": inputs.finished_on,
            },
        },
    }


@dataclass(frozen=True)
class Layer:
    media_type: str
    data: bytes
    annotations: dict[str, str]

    @property
    def digest(self) -> str:
        return sha256_digest(self.data)


def artifact_config(layers: list[Layer]) -> bytes:
    """The config blob cosign writes for its signature/attestation images."""
    config = {
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }
    return json.dumps(config, separators=(",", ":")).encode()


def artifact_manifest(config: bytes, layers: list[Layer]) -> bytes:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": OCI_CONFIG_MEDIA_TYPE, "size": len(config), "digest": sha256_digest(config)},
        "layers": [
            {
                "mediaType": layer.media_type,
                "size": len(layer.data),
                "digest": layer.digest,
                **({"annotations": layer.annotations} if layer.annotations else {}),
            }
            for layer in layers
        ],
    }
    return json.dumps(manifest, separators=(",", ":")).encode()


def append_layers(existing: list[Layer], ours: list[Layer]) -> list[Layer]:
    """What a `.sig`/`.att` artifact holds after we sign: everything already there (co-signatures survive), plus
    each of our layers that is not there yet (signing twice adds nothing)."""
    merged = list(existing)
    for layer in ours:
        if not any(
            (e.media_type, e.data, e.annotations) == (layer.media_type, layer.data, layer.annotations) for e in merged
        ):
            merged.append(layer)
    return merged
