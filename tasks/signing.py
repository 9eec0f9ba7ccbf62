"""Signing, attestations, SBOM attachment and verification in cosign's formats."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger

from blocks.registry import OciRegistry
from blocks.signing import SigningKey
from medianest_delivery.errors import RegistryError, VerificationError
from medianest_delivery.proc import run_command
from medianest_delivery.release.cosign_format import (
    CYCLONEDX_MEDIA_TYPE,
    CYCLONEDX_PREDICATE,
    DSSE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    SCAN_PREDICATE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SLSA_PROVENANCE_V1,
    SPDX_MEDIA_TYPE,
    SPDX_PREDICATE,
    Layer,
    ProvenanceInputs,
    append_layers,
    dsse_envelope,
    in_toto_statement,
    pae,
    signature_tag,
    simple_signing_payload,
    slsa_provenance,
)
from medianest_delivery.release.manifest import ReleaseManifest, SignatureRef
from medianest_delivery.release.policy import PolicyContext, ReleasePolicy, judge_image
from medianest_delivery.release.signing_keys import (
    KeyPairPem,
    key_id,
    load_private_key,
    load_public_key,
    sign_bytes,
)
from medianest_delivery.release.trust import sign_manifest
from medianest_delivery.release.violations import Rule, Violation
from tasks.policies import CACHE_EXPIRATION, digest_key, retry_on

# Every image is attested with these; the release policy decides at deploy time which it demands.
ATTESTED_PREDICATES = [SLSA_PROVENANCE_V1, CYCLONEDX_PREDICATE, SPDX_PREDICATE, SCAN_PREDICATE]
# `cosign attest --type` for each predicate.
COSIGN_TYPES = {
    SLSA_PROVENANCE_V1: "slsaprovenance1",
    CYCLONEDX_PREDICATE: "cyclonedx",
    SPDX_PREDICATE: "spdxjson",
    SCAN_PREDICATE: "vuln",
}


_signature_key = digest_key(
    "repository", "digest", "key_fingerprint", "sbom_digests", "scan_predicate", "signed_provenance", revision=3
)


def signing_key_fn(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """sign-image's cache key: the provenance without finished_on and invocation_id (they change every run)."""
    signed = {k: v for k, v in parameters["provenance"].items() if k not in ("finished_on", "invocation_id")}
    return _signature_key(context, {**parameters, "signed_provenance": signed})


@task(name="load-public-key", task_run_name="sign: load public key")
def load_public_key_pem(signing_key: SigningKey) -> str:
    """The public key (PEM) that verifies this pipeline's signatures."""
    return signing_key.get_client().public_pem.decode()


@task(
    name="attach-sbom",
    task_run_name="attach-sbom: {component}",
    cache_key_fn=digest_key("repository", "digest", "sbom_digests"),
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    retry_condition_fn=retry_on(RegistryError),
)
def attach_sbom(
    component: str,
    repository: str,
    digest: str,
    sbom_files: dict[str, str],
    sbom_digests: dict[str, str],
    registry: OciRegistry,
) -> str:
    """Store the SBOMs under cosign's ``sha256-<hex>.sbom`` tag next to the image."""
    media = {"cyclonedx": CYCLONEDX_MEDIA_TYPE, "spdx": SPDX_MEDIA_TYPE}
    layers = [Layer(media[fmt], Path(path).read_bytes(), {}) for fmt, path in sorted(sbom_files.items())]
    tag = signature_tag(digest, "sbom")
    with registry.get_client() as client:
        client.push_artifact(repository, tag, layers)
    return tag


def _sign_with_cosign(
    cosign: str, reference: str, pair: KeyPairPem, password: str, predicates: dict[str, Path]
) -> None:
    """Sign and attest with a cosign binary, from the key as stored (already cosign's encrypted format)."""
    with tempfile.TemporaryDirectory() as tmp:
        key_path = str(Path(tmp) / "cosign.key")
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as key_file:
            key_file.write(pair.private_pem)
        env = {"COSIGN_PASSWORD": password}
        run_command([cosign, "sign", "--yes", "--tlog-upload=false", "--key", key_path, reference], env=env)
        for predicate_type, path in predicates.items():
            kind = COSIGN_TYPES[predicate_type]
            run_command(
                [
                    cosign,
                    "attest",
                    "--yes",
                    "--tlog-upload=false",
                    "--key",
                    key_path,
                    "--type",
                    kind,
                    "--predicate",
                    str(path),
                    reference,
                ],
                env=env,
            )


@task(
    name="sign-image",
    task_run_name="sign: {component}",
    # What is signed, except the run's own times and id: a rebuild of the digest from another ref, commit or
    # builder signs again. The scan predicate changes only with a new scan.
    cache_key_fn=signing_key_fn,
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    retry_condition_fn=retry_on(RegistryError),
)
def sign_image(
    component: str,
    repository: str,
    digest: str,
    provenance: dict[str, Any],
    sbom_files: dict[str, str],
    sbom_digests: dict[str, str],
    scan_predicate: dict[str, Any],
    key_fingerprint: str,
    registry: OciRegistry,
    signing_key: SigningKey,
) -> SignatureRef:
    """Sign the digest and attach SLSA v1 provenance, both SBOMs and the scan result as DSSE attestations.

    Uses a ``cosign`` binary when one is on PATH, otherwise the built-in signer
    writing the same tags and media types.
    """
    pair = signing_key.get_client()
    password = signing_key.password.get_secret_value()
    name = f"{registry.host}/{repository}"
    predicates: dict[str, dict[str, Any]] = {
        SLSA_PROVENANCE_V1: slsa_provenance(ProvenanceInputs(**provenance)),
        CYCLONEDX_PREDICATE: json.loads(Path(sbom_files["cyclonedx"]).read_text()),
        SPDX_PREDICATE: json.loads(Path(sbom_files["spdx"]).read_text()),
        SCAN_PREDICATE: scan_predicate,
    }
    cosign = shutil.which("cosign")
    if cosign:
        with tempfile.TemporaryDirectory() as tmp:
            files: dict[str, Path] = {}
            for predicate_type, body in predicates.items():
                path = Path(tmp) / f"{len(files)}.json"
                path.write_text(json.dumps(body))
                files[predicate_type] = path
            _sign_with_cosign(cosign, f"{name}@{digest}", pair, password, files)
        signer = "cosign"
    else:
        key = load_private_key(pair.private_pem, password.encode())
        payload = simple_signing_payload(name, digest)
        signature = base64.b64encode(sign_bytes(key, payload)).decode()
        attestations = []
        for predicate_type, body in predicates.items():
            statement = in_toto_statement(name, digest, predicate_type, body)
            envelope = dsse_envelope(
                IN_TOTO_PAYLOAD_TYPE, statement, sign_bytes(key, pae(IN_TOTO_PAYLOAD_TYPE, statement))
            )
            attestations.append(
                Layer(
                    DSSE_MEDIA_TYPE,
                    json.dumps(envelope).encode(),
                    {SIGNATURE_ANNOTATION: "", "predicateType": predicate_type},
                )
            )
        with registry.get_client() as client:  # append, as cosign does: other signers' layers stay
            for tag, ours in (
                (
                    signature_tag(digest, "sig"),
                    [Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: signature})],
                ),
                (signature_tag(digest, "att"), attestations),
            ):
                client.push_artifact(repository, tag, append_layers(client.pull_artifact_layers(repository, tag), ours))
        signer = "cryptography"
    get_run_logger().info("signed %s@%s with %s (key %s)", name, digest, signer, key_fingerprint)
    return SignatureRef(
        signature_tag=signature_tag(digest, "sig"),
        attestation_tag=signature_tag(digest, "att"),
        sbom_tag=signature_tag(digest, "sbom"),
        key_id=key_fingerprint,
        signer=signer,
        predicate_types=list(predicates),
    )


def fingerprint(public_pem: str) -> str:
    return key_id(public_pem.encode())


@task(
    name="verify-image",
    task_run_name="verify: {repository}@{digest}",
    retries=2,
    retry_delay_seconds=2,
    retry_condition_fn=retry_on(RegistryError),
)
def verify_image(
    repository: str,
    digest: str,
    tags: list[str],
    public_key_pem: str,
    registry: OciRegistry,
    policy: ReleasePolicy | None = None,
    environment: str | None = None,
    git_sha: str = "",
    local_base_images: list[str] | None = None,
) -> dict[str, Any]:
    """Signature, attestations and immutable tags; with a policy, what the attestations say too. Raise on any
    violation, each naming its rule.

    Without a policy (build-and-publish checking its own work) every attestation
    it writes must be there; deploys pass the target environment's policy.
    """
    key = load_public_key(public_key_pem.encode())
    name = f"{registry.host}/{repository}"
    with registry.get_client() as client:
        if client.get_manifest(repository, digest) is None:
            raise VerificationError(
                str(Violation(Rule.IMAGE_PRESENT, f"image {name}@{digest} does not exist in the registry"))
            )
        tag_targets = {tag: client.resolve(repository, tag) for tag in tags}
        signature_layers = client.pull_artifact_layers(repository, signature_tag(digest, "sig"))
        attestation_layers = client.pull_artifact_layers(repository, signature_tag(digest, "att"))
    context = (
        None
        if policy is None
        else PolicyContext(
            environment=environment or "",
            now=dt.datetime.now(dt.UTC),
            git_sha=git_sha,
            local_base_images=frozenset(local_base_images or []),
        )
    )
    report, waived = judge_image(
        policy, digest, name, signature_layers, attestation_layers, key, tag_targets, context, ATTESTED_PREDICATES
    )
    if not report.ok:
        where = f" for {environment}" if environment else ""
        raise VerificationError(
            f"{name}@{digest} refused{where}: " + "; ".join(str(problem) for problem in report.problems)
        )
    logger = get_run_logger()
    logger.info(
        "verified %s@%s: %d signature(s), attestations %s",
        name,
        digest,
        report.valid_signatures,
        report.predicate_types,
    )
    for waiver in waived:
        logger.warning("WAIVED for %s: %s", environment, waiver)
    return {
        "digest": digest,
        "signatures": report.valid_signatures,
        "predicate_types": report.predicate_types,
        "waived": waived,
    }


@task(name="sign-release-manifest", task_run_name="sign: release manifest {manifest.version}", cache_policy=NO_CACHE)
def sign_release_manifest(manifest: ReleaseManifest, signing_key: SigningKey) -> ReleaseManifest:
    """The manifest signed over its canonical JSON: what deploys check against their trusted keys."""
    pair = signing_key.get_client()
    key = load_private_key(pair.private_pem, signing_key.password.get_secret_value().encode())
    return sign_manifest(manifest, key, pair.public_pem.decode())
