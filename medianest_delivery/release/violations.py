"""Named rules of the release trust chain, and the violations that cite them.

Every refusal of a release names the rule it broke, so that an operator reading a
failed deploy knows which policy entry (or which tampering) to look at.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Rule(enum.StrEnum):
    IMAGE_PRESENT = "image.present"
    TAG_IMMUTABLE = "tag.immutable"
    SIGNATURE_TRUSTED = "signature.trusted"
    SIGNATURE_SUBJECT = "signature.subject"
    ATTESTATION_SUBJECT = "attestation.subject"
    ATTESTATION_PREDICATE_TYPE = "attestation.predicate-type"
    PROVENANCE_PRESENT = "provenance.present"
    PROVENANCE_FORMAT = "provenance.format"
    PROVENANCE_BUILDER = "provenance.builder"
    PROVENANCE_SOURCE = "provenance.source"
    PROVENANCE_COMMIT = "provenance.commit"
    PROVENANCE_REF = "provenance.ref"
    BASE_IMAGE_ALLOWED = "base-image.allowed"
    SBOM_PRESENT = "sbom.present"
    SBOM_SUBJECT = "sbom.subject"
    SCAN_PRESENT = "scan.present"
    SCAN_FORMAT = "scan.format"
    SCAN_AGE = "scan.age"
    SCAN_BLOCKING = "scan.blocking-findings"
    SCAN_IGNORE_EXPIRED = "scan.ignore-expired"
    SCAN_VULNERABILITY_DATABASE = "scan.vulnerability-database"


# The only rule a waiver may lift: a scan that could not run (no vulnerability
# database offline). Forged signatures, foreign builders or blocking findings are
# never waivable: a waiver for them would be a hole in the trust chain, not a decision.
WAIVABLE_RULES = frozenset({Rule.SCAN_VULNERABILITY_DATABASE})


@dataclass(frozen=True)
class Violation:
    rule: Rule
    detail: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.detail}"
