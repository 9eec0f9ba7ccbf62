"""Decide whether stored signatures and attestations vouch for an image digest.

Pure: takes the layers already fetched from the registry and the public key,
returns every problem found (an empty list means verified), each naming its rule. Like cosign, one
signature by the trusted key is enough, whatever else is attached: co-signatures
and attestations by other keys are ignored (listed in `ignored`), never a reason
to refuse, and never a source of trust. Each required predicate type must come
from an attestation the trusted key signed. A layer the trusted key signed over
another digest or repository is always a problem (a replayed signature).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from medianest_delivery.release.cosign_format import (
    CYCLONEDX_PREDICATE,
    DSSE_MEDIA_TYPE,
    IN_TOTO_PAYLOAD_TYPE,
    SCAN_PREDICATE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    SLSA_PROVENANCE_V1,
    SPDX_PREDICATE,
    Layer,
    pae,
)
from medianest_delivery.release.signing_keys import verify_bytes
from medianest_delivery.release.violations import Rule, Violation

# The rule a missing attestation breaks, by predicate type.
MISSING_RULE = {
    SLSA_PROVENANCE_V1: Rule.PROVENANCE_PRESENT,
    CYCLONEDX_PREDICATE: Rule.SBOM_PRESENT,
    SPDX_PREDICATE: Rule.SBOM_PRESENT,
    SCAN_PREDICATE: Rule.SCAN_PRESENT,
}


@dataclass
class VerificationReport:
    digest: str
    valid_signatures: int = 0
    predicate_types: list[str] = field(default_factory=list)
    # predicate type -> every predicate the trusted key signed about this digest, in layer order
    predicates: dict[str, list[Any]] = field(default_factory=dict)
    problems: list[Violation] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # layers not signed by the trusted key

    @property
    def ok(self) -> bool:
        return not self.problems


def check_signatures(
    layers: list[Layer], digest: str, repository: str, key: ec.EllipticCurvePublicKey, report: VerificationReport
) -> None:
    untrusted: list[Violation] = []
    for index, layer in enumerate(layers):
        if layer.media_type != SIMPLE_SIGNING_MEDIA_TYPE:
            continue
        where = f"signature layer {index}"
        encoded = layer.annotations.get(SIGNATURE_ANNOTATION, "")
        try:
            signature = base64.b64decode(encoded, validate=True)
            payload: Any = json.loads(layer.data)
            signed_digest = payload["critical"]["image"]["docker-manifest-digest"]
            signed_reference = payload["critical"]["identity"]["docker-reference"]
        except (ValueError, KeyError, TypeError):
            untrusted.append(Violation(Rule.SIGNATURE_TRUSTED, f"{where}: malformed payload or signature annotation"))
            continue
        if not verify_bytes(key, layer.data, signature):
            untrusted.append(
                Violation(Rule.SIGNATURE_TRUSTED, f"{where}: signature does not verify with the trusted key")
            )
            continue
        if signed_digest != digest:
            report.problems.append(Violation(Rule.SIGNATURE_SUBJECT, f"{where}: signs {signed_digest}, not {digest}"))
            continue
        if signed_reference != repository:
            report.problems.append(
                Violation(Rule.SIGNATURE_SUBJECT, f"{where}: signs repository {signed_reference}, not {repository}")
            )
            continue
        report.valid_signatures += 1
    if report.valid_signatures:
        report.ignored += [str(v) for v in untrusted]
        return
    report.problems += untrusted
    if not report.problems:
        report.problems.append(Violation(Rule.SIGNATURE_TRUSTED, f"no signature found for {digest}"))


def check_attestations(
    layers: list[Layer],
    digest: str,
    key: ec.EllipticCurvePublicKey,
    required_predicates: list[str],
    report: VerificationReport,
) -> None:
    algorithm, _, hex_part = digest.partition(":")
    untrusted: list[Violation] = []
    for index, layer in enumerate(layers):
        if layer.media_type != DSSE_MEDIA_TYPE:
            continue
        where = f"attestation layer {index}"
        try:
            envelope = json.loads(layer.data)
            payload = base64.b64decode(envelope["payload"], validate=True)
            signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
            statement = json.loads(payload)
        except (ValueError, KeyError, TypeError):
            untrusted.append(Violation(Rule.SIGNATURE_TRUSTED, f"{where}: malformed DSSE envelope"))
            continue
        if envelope.get("payloadType") != IN_TOTO_PAYLOAD_TYPE:
            kind = envelope.get("payloadType")
            untrusted.append(Violation(Rule.SIGNATURE_TRUSTED, f"{where}: payloadType {kind!r} is not in-toto"))
            continue
        signed = pae(envelope["payloadType"], payload)
        if not any(verify_bytes(key, signed, sig) for sig in signatures):
            untrusted.append(
                Violation(Rule.SIGNATURE_TRUSTED, f"{where}: DSSE signature does not verify with the trusted key")
            )
            continue
        if not isinstance(statement, dict):
            untrusted.append(Violation(Rule.SIGNATURE_TRUSTED, f"{where}: statement is not a JSON object"))
            continue
        subject = statement.get("subject")
        named = [s.get("digest") for s in subject if isinstance(s, dict)] if isinstance(subject, list) else []
        if hex_part not in [d.get(algorithm) for d in named if isinstance(d, dict)]:
            report.problems.append(Violation(Rule.ATTESTATION_SUBJECT, f"{where}: statement subject is not {digest}"))
            continue
        predicate_type = str(statement.get("predicateType"))
        announced = layer.annotations.get("predicateType")
        if announced is not None and announced != predicate_type:  # cosign indexes attestations by this annotation
            report.problems.append(
                Violation(
                    Rule.ATTESTATION_PREDICATE_TYPE,
                    f"{where}: announced as {announced} but its signed statement is {predicate_type}",
                )
            )
            continue
        report.predicate_types.append(predicate_type)
        report.predicates.setdefault(predicate_type, []).append(statement.get("predicate"))
    missing = [p for p in required_predicates if p not in report.predicate_types]
    if not missing:
        report.ignored += [str(v) for v in untrusted]
        return
    report.problems += untrusted
    report.problems += [
        Violation(
            MISSING_RULE.get(predicate, Rule.SIGNATURE_TRUSTED),
            f"required attestation {predicate} missing for {digest}",
        )
        for predicate in missing
    ]


def verify_image_evidence(
    digest: str,
    repository: str,
    signature_layers: list[Layer],
    attestation_layers: list[Layer],
    key: ec.EllipticCurvePublicKey,
    required_predicates: list[str],
) -> VerificationReport:
    report = VerificationReport(digest)
    check_signatures(signature_layers, digest, repository, key, report)
    check_attestations(attestation_layers, digest, key, required_predicates, report)
    return report
