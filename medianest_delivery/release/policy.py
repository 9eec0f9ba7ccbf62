"""The release policy: what a deploy demands of an image's attestations, beyond a valid signature.

A signature says "our key signed this digest". The policy reads what was
signed: who built it (SLSA provenance builder id), from which repository, commit
and ref; on which base image; whether both SBOMs describe this digest; whether
a scan ran recently enough, found nothing blocking, and suppressed findings
only with live ignore entries. Each refusal names its rule (violations.Rule).

The policy is a YAML document in the app's repository (``security.release_policy``
in its config) or a block; defaults apply to whatever it leaves out. A scan that
could not run (no vulnerability database offline) blocks the environments listed
in ``scans.require_vulnerability_scan`` unless a waiver (who, why, until when)
covers it: the only rule a waiver may lift.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, field_validator

from medianest_delivery.release.cosign_format import (
    CYCLONEDX_PREDICATE,
    SCAN_PREDICATE,
    SLSA_PROVENANCE_V1,
    SPDX_PREDICATE,
    Layer,
)
from medianest_delivery.release.scan_attestation import ScanResult
from medianest_delivery.release.verification import VerificationReport, verify_image_evidence
from medianest_delivery.release.violations import WAIVABLE_RULES, Rule, Violation
from medianest_delivery.release.yamldoc import parse_yaml_model

# The builder id that build-and-publish writes into provenance.
BUILDER_ID = "https://github.com/medianest/delivery/flows/build-and-publish@v1"

SBOM_PREDICATES = {"cyclonedx": CYCLONEDX_PREDICATE, "spdx": SPDX_PREDICATE}
# A scan that claims to have finished this far in the future is clock trouble or forgery.
CLOCK_SKEW = dt.timedelta(minutes=5)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProvenanceRules(_Strict):
    builder_ids: list[str] = Field(default_factory=lambda: [BUILDER_ID], min_length=1)
    # Glob patterns over the source URI; empty: any repository.
    source_repositories: list[str] = Field(default_factory=list)
    # Glob patterns over the ref the build was asked for (refs/heads/main, refs/tags/v*); empty: any ref.
    allowed_refs: list[str] = Field(default_factory=list)
    # A build of a working tree with uncommitted changes is not the commit it names.
    allow_dirty_builds: bool = False


class BaseImageRules(_Strict):
    """Always checked (fail closed): a release on a base image nobody listed is refused."""

    # Image ids (sha256:...) a release may be built on.
    allowed_digests: list[str] = Field(default_factory=list)
    # Also allow the base images the local stack built (mmdebstrap), as the stack records them.
    local_stack: bool = True

    @field_validator("allowed_digests")
    @classmethod
    def _digests(cls, value: list[str]) -> list[str]:
        for digest in value:
            algorithm, _, hex_part = digest.partition(":")
            if algorithm != "sha256" or len(hex_part) != 64:
                raise ValueError(f"{digest!r} is not a sha256:<64 hex> image id")
        return value


class SbomRules(_Strict):
    required: list[str] = Field(default_factory=lambda: ["cyclonedx", "spdx"])

    @field_validator("required")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SBOM_PREDICATES))
        if unknown:
            raise ValueError(f"unknown SBOM formats {unknown}; known: {sorted(SBOM_PREDICATES)}")
        return value


class ScanRules(_Strict):
    """A scan attestation is always required: without one nothing says what the image holds."""

    max_age_hours: float = Field(default=720.0, gt=0)
    # Environment globs where a scan without a vulnerability database is not enough.
    require_vulnerability_scan: list[str] = Field(default_factory=lambda: ["production"])


class Waiver(_Strict):
    """An explicit, signed-off exception to one waivable rule, with an end date."""

    rule: Rule
    environments: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    who: str = Field(min_length=2)
    why: str = Field(min_length=10)
    expires: dt.date

    @field_validator("rule")
    @classmethod
    def _waivable(cls, value: Rule) -> Rule:
        if value not in WAIVABLE_RULES:
            raise ValueError(f"rule {value} cannot be waived; waivable: {sorted(str(r) for r in WAIVABLE_RULES)}")
        return value

    def covers(self, rule: Rule, environment: str, today: dt.date) -> bool:
        """A waiver expiring today still holds; from tomorrow it does not."""
        return (
            self.rule is rule
            and self.expires >= today
            and any(fnmatch.fnmatchcase(environment, pattern) for pattern in self.environments)
        )

    def describe(self) -> str:
        return f"{self.rule} waived by {self.who} until {self.expires}: {self.why}"


class ReleasePolicy(_Strict):
    provenance: ProvenanceRules = Field(default_factory=ProvenanceRules)
    base_images: BaseImageRules = Field(default_factory=BaseImageRules)
    sboms: SbomRules = Field(default_factory=SbomRules)
    scans: ScanRules = Field(default_factory=ScanRules)
    waivers: list[Waiver] = Field(default_factory=list)

    def required_predicates(self) -> list[str]:
        return [SLSA_PROVENANCE_V1, *(SBOM_PREDICATES[name] for name in self.sboms.required), SCAN_PREDICATE]

    def waivers_for(self, environment: str, today: dt.date) -> list[Waiver]:
        return [w for w in self.waivers if any(w.covers(r, environment, today) for r in WAIVABLE_RULES)]


def parse_release_policy(text: str, origin: str = "release policy") -> ReleasePolicy:
    """Parse a policy document; an empty document is the default policy."""
    return parse_yaml_model(ReleasePolicy, text, origin)


@dataclass(frozen=True)
class PolicyContext:
    """What the deploy knows besides the attestations: where, when, which release."""

    environment: str
    now: dt.datetime
    git_sha: str
    # Base images allowed beyond the policy's list (the local stack's own builds, when it says so).
    local_base_images: frozenset[str] = frozenset()


@dataclass
class PolicyDecision:
    violations: list[Violation] = field(default_factory=list)
    waived: list[str] = field(default_factory=list)


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class ProvenanceFacts:
    """What a deploy reads from SLSA v1 provenance as build-and-publish writes it."""

    builder: str
    source_uri: str
    commit: str
    ref: str | None
    dirty: bool
    base_images: list[str]

    @classmethod
    def of(cls, predicate: Any) -> ProvenanceFacts | str:
        """The facts, or what makes the predicate unreadable (for the provenance.format rule)."""
        try:
            build = predicate["buildDefinition"]
            source = build["externalParameters"]["source"]
            builder = predicate["runDetails"]["builder"]["id"]
            commit = source["digest"]["gitCommit"]
            dependencies = build.get("resolvedDependencies") or []
            bases = [
                "sha256:" + _str(d["digest"].get("sha256"))
                for d in dependencies
                if isinstance(d, dict) and d.get("uri") == "oci://base-image" and isinstance(d.get("digest"), dict)
            ]
            facts = cls(builder, source["uri"], commit, source.get("ref"), source.get("dirty", False), bases)
        except (KeyError, TypeError, AttributeError) as exc:
            return f"provenance is not SLSA v1 as build-and-publish writes it ({type(exc).__name__}: {exc})"
        if not all(isinstance(v, str) for v in (facts.builder, facts.source_uri, facts.commit)):
            return "provenance builder, source or commit is not a string"
        if not isinstance(facts.dirty, bool) or not (facts.ref is None or isinstance(facts.ref, str)):
            return "provenance ref or dirty flag has the wrong type"
        return facts


def check_provenance(
    policy: ProvenanceRules, predicate: Any, context: PolicyContext, base_images: BaseImageRules
) -> list[Violation]:
    """Builder, source repository, commit (clean), ref and base image, as the trusted provenance states them."""
    facts = ProvenanceFacts.of(predicate)
    if isinstance(facts, str):
        return [Violation(Rule.PROVENANCE_FORMAT, facts)]
    problems: list[Violation] = []
    if facts.builder not in policy.builder_ids:
        problems.append(
            Violation(
                Rule.PROVENANCE_BUILDER, f"built by {facts.builder!r}, not a trusted builder {policy.builder_ids}"
            )
        )
    if policy.source_repositories and not any(
        fnmatch.fnmatchcase(facts.source_uri, p) for p in policy.source_repositories
    ):
        problems.append(
            Violation(
                Rule.PROVENANCE_SOURCE, f"built from {facts.source_uri!r}, not an allowed {policy.source_repositories}"
            )
        )
    if facts.commit != context.git_sha:
        problems.append(
            Violation(
                Rule.PROVENANCE_COMMIT, f"built from commit {facts.commit!r}, but the release is {context.git_sha}"
            )
        )
    if facts.dirty and not policy.allow_dirty_builds:
        problems.append(
            Violation(
                Rule.PROVENANCE_COMMIT, "built from a working tree with uncommitted changes, not the commit alone"
            )
        )
    if policy.allowed_refs and not any(fnmatch.fnmatchcase(_str(facts.ref), p) for p in policy.allowed_refs):
        problems.append(
            Violation(Rule.PROVENANCE_REF, f"built from ref {facts.ref!r}, not an allowed {policy.allowed_refs}")
        )
    allowed = set(base_images.allowed_digests) | (set(context.local_base_images) if base_images.local_stack else set())
    if not facts.base_images:
        problems.append(Violation(Rule.BASE_IMAGE_ALLOWED, "provenance names no base image"))
    problems += [
        Violation(Rule.BASE_IMAGE_ALLOWED, f"base image {base} is not in the allowlist ({len(allowed)} allowed)")
        for base in facts.base_images
        if base not in allowed
    ]
    return problems


def sbom_mentions(document: Any, digest: str) -> bool:
    """Does the SBOM describe this image digest (trivy names the scanned reference and its repo digests)?

    Anything that is not an SBOM of the expected shape describes nothing.
    """
    if not isinstance(document, dict):
        return False
    hex_part = digest.partition(":")[2]
    if "bomFormat" in document:  # CycloneDX: the subject is metadata.component
        metadata = document.get("metadata")
        described: Any = metadata.get("component") if isinstance(metadata, dict) else None
    else:  # SPDX: the document name and the packages it describes
        describes = document.get("documentDescribes")
        ids = {i for i in describes if isinstance(i, str)} if isinstance(describes, list) else set()
        packages = document.get("packages")
        described = [document.get("name")] + [
            p
            for p in (packages if isinstance(packages, list) else [])
            if isinstance(p, dict) and p.get("SPDXID") in ids
        ]
    return hex_part in repr(described)


def check_sboms(policy: SbomRules, predicates: dict[str, Any], digest: str) -> list[Violation]:
    """Each required SBOM that was attested must describe this digest (a missing one is sbom.present's)."""
    return [
        Violation(Rule.SBOM_SUBJECT, f"the {name} SBOM does not describe {digest}")
        for name in policy.required
        if SBOM_PREDICATES[name] in predicates and not sbom_mentions(predicates[SBOM_PREDICATES[name]], digest)
    ]


def newest_scan(candidates: list[Any]) -> ScanResult | str:
    """Of every scan the trusted key attested, the one that finished last (by its signed time, not layer order)."""
    scans = [ScanResult.from_predicate(c) for c in candidates]
    readable = [s for s in scans if isinstance(s, ScanResult)]
    if not readable:
        return next((s for s in scans if isinstance(s, str)), "no scan predicate")
    return max(readable, key=lambda s: s.finished)


def check_scan(
    policy: ReleasePolicy, candidates: list[Any], context: PolicyContext, decision: PolicyDecision
) -> list[Violation]:
    """Age, blocking findings, expired ignore entries, and the vulnerability database (waivable)."""
    scan = newest_scan(candidates)
    if isinstance(scan, str):
        return [Violation(Rule.SCAN_FORMAT, scan)]
    problems: list[Violation] = []
    age = context.now - scan.finished
    if age > dt.timedelta(hours=policy.scans.max_age_hours):
        problems.append(
            Violation(
                Rule.SCAN_AGE,
                f"scanned {age.total_seconds() / 3600:.0f} h ago, older than {policy.scans.max_age_hours:g} h: "
                "publish the commit again to scan it again",
            )
        )
    elif age < -CLOCK_SKEW:
        problems.append(Violation(Rule.SCAN_AGE, f"scan finished in the future ({scan.finished.isoformat()})"))
    if scan.blocking:
        problems.append(Violation(Rule.SCAN_BLOCKING, f"{scan.blocking} unsuppressed blocking finding(s)"))
    today = context.now.date()
    problems += [
        Violation(
            Rule.SCAN_IGNORE_EXPIRED,
            f"ignore entry {entry.id} expired on {entry.expires} and suppresses a blocking finding",
        )
        for entry in scan.suppressions
        if entry.blocking and entry.expires < today
    ]
    if not scan.vulnerability_database and any(
        fnmatch.fnmatchcase(context.environment, p) for p in policy.scans.require_vulnerability_scan
    ):
        rule = Rule.SCAN_VULNERABILITY_DATABASE
        waiver = next((w for w in policy.waivers if w.covers(rule, context.environment, today)), None)
        recorded = any(w.startswith(f"{rule} waived") for w in scan.waivers)
        if waiver is None or not recorded:
            missing = "an unexpired waiver in the release policy" if waiver is None else "a waiver recorded at build"
            problems.append(
                Violation(
                    rule,
                    f"the scan had no vulnerability database, and {context.environment} requires one "
                    f"(or {missing}, visible in the release)",
                )
            )
        else:
            decision.waived.append(waiver.describe())
    return problems


def evaluate_release_policy(
    policy: ReleasePolicy, predicates: dict[str, list[Any]], digest: str, context: PolicyContext
) -> PolicyDecision:
    """Judge what the trusted key attested about ``digest`` (every statement of each type, oldest first);
    missing attestations were reported by verification."""
    newest = {kind: statements[-1] for kind, statements in predicates.items() if statements}
    decision = PolicyDecision()
    for provenance in predicates.get(SLSA_PROVENANCE_V1, []):  # every provenance must pass, not just one
        decision.violations += check_provenance(policy.provenance, provenance, context, policy.base_images)
    decision.violations += check_sboms(policy.sboms, newest, digest)
    if predicates.get(SCAN_PREDICATE):
        decision.violations += check_scan(policy, predicates[SCAN_PREDICATE], context, decision)
    return decision


def tag_violations(repository: str, digest: str, tags: dict[str, str | None]) -> list[Violation]:
    """Each released (immutable) tag must still name the released digest.

    >>> tag_violations("r", "sha256:a", {"v1": "sha256:a"})
    []
    >>> [str(v) for v in tag_violations("r", "sha256:a", {"v1": "sha256:b"})]
    ['[tag.immutable] tag r:v1 now points at sha256:b, not the released sha256:a']
    """
    return [
        Violation(Rule.TAG_IMMUTABLE, f"tag {repository}:{tag} now points at {current}, not the released {digest}")
        for tag, current in tags.items()
        if current != digest
    ]


def judge_image(
    policy: ReleasePolicy | None,
    digest: str,
    repository: str,
    signature_layers: list[Layer],
    attestation_layers: list[Layer],
    key: ec.EllipticCurvePublicKey,
    tags: dict[str, str | None],
    context: PolicyContext | None,
    attested: list[str],
) -> tuple[VerificationReport, list[str]]:
    """Everything a deploy checks about one image, from what the registry holds: the report (problems from
    signatures, attestations, tags and the policy, each naming its rule) and the waivers applied.

    Without a policy (the build checking its own work), every predicate in ``attested`` must be there.
    """
    required = attested if policy is None else policy.required_predicates()
    report = verify_image_evidence(digest, repository, signature_layers, attestation_layers, key, required)
    report.problems += tag_violations(repository, digest, tags)
    if policy is None or context is None:
        return report, []
    decision = evaluate_release_policy(policy, report.predicates, digest, context)
    report.problems += decision.violations
    return report, decision.waived
