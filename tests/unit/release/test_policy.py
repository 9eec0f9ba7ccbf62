"""The release policy over real ECDSA-signed evidence: a corpus of tampered or unfit artifacts, each refused with
its named rule, and the good releases, none refused.

Every case starts from one good image (signature, SLSA provenance, CycloneDX and
SPDX SBOMs about the digest, a fresh scan attestation) and changes one thing.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from medianest_delivery.errors import ConfigError
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
    ProvenanceInputs,
    dsse_envelope,
    in_toto_statement,
    pae,
    simple_signing_payload,
    slsa_provenance,
)
from medianest_delivery.release.policy import (
    BUILDER_ID,
    PolicyContext,
    ReleasePolicy,
    judge_image,
    parse_release_policy,
)
from medianest_delivery.release.scan_attestation import ScanResult, Suppression
from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key, load_public_key, sign_bytes
from medianest_delivery.release.violations import Rule

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
REPO = "127.0.0.1:5000/medianest/backend"
SHA = "1" * 40
BASE = "sha256:" + "0b" * 32
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)

PAIR = generate_key_pair(b"pw")
KEY = load_private_key(PAIR.private_pem, b"pw")
PUBLIC = load_public_key(PAIR.public_pem)
FOREIGN_PAIR = generate_key_pair(b"")
FOREIGN = load_private_key(FOREIGN_PAIR.private_pem, b"")

WAIVER = {
    "rule": "scan.vulnerability-database",
    "environments": ["production"],
    "who": "on-call lead",
    "why": "no vulnerability database offline",
    "expires": "2026-12-31",
}
POLICY = ReleasePolicy.model_validate(
    {
        "provenance": {
            "builder_ids": [BUILDER_ID],
            "source_repositories": ["https://github.com/medianest/*"],
            "allowed_refs": ["refs/heads/main", "refs/tags/v*"],
        },
        "base_images": {"allowed_digests": [BASE]},
        "scans": {"max_age_hours": 24, "require_vulnerability_scan": ["production"]},
        "waivers": [WAIVER],
    }
)


def provenance(**changes: Any) -> dict[str, Any]:
    inputs = ProvenanceInputs(
        source_uri="https://github.com/medianest/medianest",
        git_sha=SHA,
        dockerfile="backend/Dockerfile",
        component="backend",
        version="1.0.0",
        base_image_digest=BASE,
        builder_id=BUILDER_ID,
        invocation_id="run-1",
        started_on=NOW.isoformat(),
        finished_on=NOW.isoformat(),
        source_ref="refs/heads/main",
    )
    return slsa_provenance(replace(inputs, **changes))


def cyclonedx(digest: str = DIGEST) -> dict[str, Any]:
    """The shape trivy writes: the scanned image, by digest, is metadata.component."""
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "metadata": {"component": {"type": "container", "name": f"{REPO}@{digest}", "bom-ref": f"pkg:oci/b@{digest}"}},
        "components": [{"name": "python3", "version": "3.11"}],
    }


def spdx(digest: str = DIGEST) -> dict[str, Any]:
    """The shape trivy writes: the document is named after the scanned reference."""
    return {"spdxVersion": "SPDX-2.3", "name": f"{REPO}@{digest}", "packages": [{"SPDXID": "SPDXRef-1"}]}


def scan(**changes: Any) -> dict[str, Any]:
    result = ScanResult(
        scanners=["vuln", "secret", "license"],
        vulnerability_database=True,
        started=NOW - dt.timedelta(hours=1, minutes=1),
        finished=NOW - dt.timedelta(hours=1),
        findings={"secret": {"CRITICAL": 0}},
    )
    return replace(result, **changes).to_predicate()


def signature(key: Any = KEY, digest: str = DIGEST, repo: str = REPO) -> Layer:
    payload = simple_signing_payload(repo, digest)
    return Layer(
        SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: base64.b64encode(sign_bytes(key, payload)).decode()}
    )


def attestation(
    predicate_type: str, predicate: Any, key: Any = KEY, digest: str = DIGEST, announced: str | None = None
) -> Layer:
    statement = in_toto_statement(REPO, digest, predicate_type, predicate)
    envelope = dsse_envelope(IN_TOTO_PAYLOAD_TYPE, statement, sign_bytes(key, pae(IN_TOTO_PAYLOAD_TYPE, statement)))
    annotations = {SIGNATURE_ANNOTATION: "", "predicateType": announced or predicate_type}
    return Layer(DSSE_MEDIA_TYPE, json.dumps(envelope).encode(), annotations)


@dataclass
class Image:
    """One image's evidence in the registry, and the deploy it is judged for."""

    signatures: list[Layer] = field(default_factory=lambda: [signature()])
    predicates: dict[str, Any] = field(
        default_factory=lambda: {
            SLSA_PROVENANCE_V1: provenance(),
            CYCLONEDX_PREDICATE: cyclonedx(),
            SPDX_PREDICATE: spdx(),
            SCAN_PREDICATE: scan(),
        }
    )
    extra_attestations: list[Layer] = field(default_factory=list)
    tags: dict[str, str | None] = field(default_factory=lambda: {"1.0.0": DIGEST})
    environment: str = "production"
    now: dt.datetime = NOW
    git_sha: str = SHA
    policy: ReleasePolicy = POLICY
    local_base_images: frozenset[str] = frozenset()

    def judge(self) -> tuple[list[Rule], list[str]]:
        layers = [attestation(t, p) for t, p in self.predicates.items()] + self.extra_attestations
        report, waived = judge_image(
            self.policy,
            DIGEST,
            REPO,
            self.signatures,
            layers,
            PUBLIC,  # type: ignore[arg-type]
            self.tags,
            PolicyContext(self.environment, self.now, self.git_sha, self.local_base_images),
            [],
        )
        return [problem.rule for problem in report.problems], waived


def without(predicate_type: str) -> Callable[[Image], None]:
    return lambda image: image.predicates.pop(predicate_type)


def with_predicate(predicate_type: str, value: Any) -> Callable[[Image], None]:
    return lambda image: image.predicates.__setitem__(predicate_type, value)


def edited_provenance(edit: Callable[[dict[str, Any]], None]) -> Callable[[Image], None]:
    def change(image: Image) -> None:
        body = copy.deepcopy(image.predicates[SLSA_PROVENANCE_V1])
        edit(body)
        image.predicates[SLSA_PROVENANCE_V1] = body

    return change


def foreign_only(predicate_type: str) -> Callable[[Image], None]:
    def change(image: Image) -> None:
        image.extra_attestations.append(attestation(predicate_type, image.predicates.pop(predicate_type), FOREIGN))

    return change


def tampered_envelope(image: Image) -> None:
    layer = attestation(SLSA_PROVENANCE_V1, image.predicates.pop(SLSA_PROVENANCE_V1))
    envelope = json.loads(layer.data)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["runDetails"]["builder"]["id"] = BUILDER_ID + "-evil"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    image.extra_attestations.append(Layer(layer.media_type, json.dumps(envelope).encode(), layer.annotations))


def swapped_predicate(image: Image) -> None:
    """The provenance statement re-announced as an SBOM (cosign lists attestations by the annotation)."""
    image.extra_attestations.append(
        attestation(SLSA_PROVENANCE_V1, image.predicates[SLSA_PROVENANCE_V1], announced=CYCLONEDX_PREDICATE)
    )


def raw_attestation(statement: dict[str, Any], predicate_type: str) -> Layer:
    """A statement exactly as given (subject included), signed by our key."""
    payload = json.dumps(statement).encode()
    envelope = dsse_envelope(IN_TOTO_PAYLOAD_TYPE, payload, sign_bytes(KEY, pae(IN_TOTO_PAYLOAD_TYPE, payload)))
    return Layer(DSSE_MEDIA_TYPE, json.dumps(envelope).encode(), {"predicateType": predicate_type})


def null_subject(image: Image) -> None:
    statement = {"_type": "https://in-toto.io/Statement/v1", "subject": None, "predicateType": SLSA_PROVENANCE_V1}
    image.extra_attestations.append(raw_attestation({**statement, "predicate": provenance()}, SLSA_PROVENANCE_V1))


WAIVED = "scan.vulnerability-database waived by on-call lead until 2026-12-31: no vulnerability database offline"


def unscanned(waivers: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    """A scan without the vulnerability database, with the waivers the build recorded in it."""
    return scan(vulnerability_database=False, scanners=["secret", "license"], waivers=waivers or [], **changes)


def set_field(name: str, value: Any) -> Callable[[Image], None]:
    return lambda image: setattr(image, name, value)


def suppressed(expires: dt.date, blocking: bool) -> dict[str, Any]:
    return scan(suppressions=[Suppression("CVE-2026-0001", expires, blocking)])


# (name, change to the good image, the rule it must be refused by)
CORPUS: list[tuple[str, Callable[[Image], None], Rule]] = [
    ("unsigned", set_field("signatures", []), Rule.SIGNATURE_TRUSTED),
    ("signed by a foreign key", set_field("signatures", [signature(FOREIGN)]), Rule.SIGNATURE_TRUSTED),
    (
        "signature payload edited",
        set_field(
            "signatures",
            [Layer(SIMPLE_SIGNING_MEDIA_TYPE, signature().data.replace(b"ab", b"ac", 1), signature().annotations)],
        ),
        Rule.SIGNATURE_TRUSTED,
    ),
    (
        "malformed signature annotation",
        set_field(
            "signatures",
            [Layer(SIMPLE_SIGNING_MEDIA_TYPE, signature().data, {SIGNATURE_ANNOTATION: "not base64!"})],
        ),
        Rule.SIGNATURE_TRUSTED,
    ),
    ("signature over another digest", set_field("signatures", [signature(digest=OTHER)]), Rule.SIGNATURE_SUBJECT),
    (
        "signature over another repository",
        set_field("signatures", [signature(repo="evil.example:5000/x")]),
        Rule.SIGNATURE_SUBJECT,
    ),
    ("re-pushed tag", set_field("tags", {"1.0.0": OTHER}), Rule.TAG_IMMUTABLE),
    ("deleted tag", set_field("tags", {"1.0.0": None}), Rule.TAG_IMMUTABLE),
    ("no provenance", without(SLSA_PROVENANCE_V1), Rule.PROVENANCE_PRESENT),
    ("provenance by a foreign key only", foreign_only(SLSA_PROVENANCE_V1), Rule.PROVENANCE_PRESENT),
    ("provenance envelope edited", tampered_envelope, Rule.PROVENANCE_PRESENT),
    (
        "provenance about another digest",
        lambda image: image.extra_attestations.append(
            attestation(SLSA_PROVENANCE_V1, image.predicates.pop(SLSA_PROVENANCE_V1), digest=OTHER)
        ),
        Rule.ATTESTATION_SUBJECT,
    ),
    ("provenance announced as an SBOM", swapped_predicate, Rule.ATTESTATION_PREDICATE_TYPE),
    (
        "foreign builder",
        edited_provenance(lambda p: p["runDetails"]["builder"].__setitem__("id", "https://evil.example/builder")),
        Rule.PROVENANCE_BUILDER,
    ),
    (
        "foreign source repository",
        edited_provenance(
            lambda p: p["buildDefinition"]["externalParameters"]["source"].__setitem__(
                "uri", "https://github.com/attacker/medianest"
            )
        ),
        Rule.PROVENANCE_SOURCE,
    ),
    ("built from another commit", set_field("git_sha", "2" * 40), Rule.PROVENANCE_COMMIT),
    (
        "built from a branch outside the allowed refs",
        edited_provenance(
            lambda p: p["buildDefinition"]["externalParameters"]["source"].__setitem__("ref", "refs/heads/wip")
        ),
        Rule.PROVENANCE_REF,
    ),
    (
        "provenance without a ref",
        edited_provenance(lambda p: p["buildDefinition"]["externalParameters"]["source"].pop("ref")),
        Rule.PROVENANCE_REF,
    ),
    ("provenance without a builder", edited_provenance(lambda p: p.pop("runDetails")), Rule.PROVENANCE_FORMAT),
    ("provenance that is not an object", with_predicate(SLSA_PROVENANCE_V1, ["x"]), Rule.PROVENANCE_FORMAT),
    (
        "unlisted base image",
        with_predicate(SLSA_PROVENANCE_V1, provenance(base_image_digest="sha256:" + "ee" * 32)),
        Rule.BASE_IMAGE_ALLOWED,
    ),
    (
        "no base image in provenance",
        edited_provenance(lambda p: p["buildDefinition"].__setitem__("resolvedDependencies", [])),
        Rule.BASE_IMAGE_ALLOWED,
    ),
    ("no CycloneDX SBOM", without(CYCLONEDX_PREDICATE), Rule.SBOM_PRESENT),
    ("no SPDX SBOM", without(SPDX_PREDICATE), Rule.SBOM_PRESENT),
    ("CycloneDX SBOM by a foreign key only", foreign_only(CYCLONEDX_PREDICATE), Rule.SBOM_PRESENT),
    ("CycloneDX SBOM of another image", with_predicate(CYCLONEDX_PREDICATE, cyclonedx(OTHER)), Rule.SBOM_SUBJECT),
    ("SPDX SBOM of another image", with_predicate(SPDX_PREDICATE, spdx(OTHER)), Rule.SBOM_SUBJECT),
    ("no scan attestation", without(SCAN_PREDICATE), Rule.SCAN_PRESENT),
    ("scan by a foreign key only", foreign_only(SCAN_PREDICATE), Rule.SCAN_PRESENT),
    ("stale scan", set_field("now", NOW + dt.timedelta(hours=24)), Rule.SCAN_AGE),
    ("scan from the future", set_field("now", NOW - dt.timedelta(hours=2)), Rule.SCAN_AGE),
    ("unsuppressed blocking finding", with_predicate(SCAN_PREDICATE, scan(blocking=2)), Rule.SCAN_BLOCKING),
    (
        "expired ignore entry on a blocking finding",
        with_predicate(SCAN_PREDICATE, suppressed(dt.date(2026, 11, 30), blocking=True)),
        Rule.SCAN_IGNORE_EXPIRED,
    ),
    ("scan predicate malformed", with_predicate(SCAN_PREDICATE, {"scanner": {}}), Rule.SCAN_FORMAT),
    (
        "scan with a negative blocking count",
        with_predicate(SCAN_PREDICATE, scan(blocking=-1)),
        Rule.SCAN_FORMAT,
    ),
    (
        "no vulnerability database, no waiver",
        lambda image: (
            image.predicates.__setitem__(SCAN_PREDICATE, scan(vulnerability_database=False, scanners=["secret"])),
            setattr(image, "policy", POLICY.model_copy(update={"waivers": []})),
        ),
        Rule.SCAN_VULNERABILITY_DATABASE,
    ),
    (
        "no vulnerability database, waiver expired",
        lambda image: (
            image.predicates.__setitem__(SCAN_PREDICATE, scan(vulnerability_database=False, scanners=["secret"])),
            setattr(image, "now", dt.datetime(2027, 1, 1, 0, 30, tzinfo=dt.UTC)),
            image.predicates.__setitem__(
                SCAN_PREDICATE,
                scan(
                    vulnerability_database=False,
                    scanners=["secret"],
                    started=dt.datetime(2026, 12, 31, 23, tzinfo=dt.UTC),
                    finished=dt.datetime(2027, 1, 1, tzinfo=dt.UTC),
                ),
            ),
        ),
        Rule.SCAN_VULNERABILITY_DATABASE,
    ),
    (
        "no vulnerability database, waiver for another environment",
        lambda image: (
            image.predicates.__setitem__(SCAN_PREDICATE, scan(vulnerability_database=False, scanners=["secret"])),
            setattr(image, "environment", "production-eu"),
            setattr(
                image,
                "policy",
                POLICY.model_copy(
                    update={"scans": POLICY.scans.model_copy(update={"require_vulnerability_scan": ["production*"]})}
                ),
            ),
        ),
        Rule.SCAN_VULNERABILITY_DATABASE,
    ),
    (
        "no vulnerability database, the policy's waiver never recorded at build",
        with_predicate(SCAN_PREDICATE, unscanned()),
        Rule.SCAN_VULNERABILITY_DATABASE,
    ),
    ("statement with a null subject", null_subject, Rule.ATTESTATION_SUBJECT),
    (
        "provenance dependencies that are not a list",
        edited_provenance(lambda p: p["buildDefinition"].__setitem__("resolvedDependencies", 5)),
        Rule.PROVENANCE_FORMAT,
    ),
    (
        "provenance builder that is not a string",
        edited_provenance(lambda p: p["runDetails"]["builder"].__setitem__("id", ["x"])),
        Rule.PROVENANCE_FORMAT,
    ),
    (
        "built from a dirty working tree",
        with_predicate(SLSA_PROVENANCE_V1, provenance(source_dirty=True)),
        Rule.PROVENANCE_COMMIT,
    ),
    (
        "a second provenance, signed by our key, from a foreign builder",
        lambda image: image.extra_attestations.append(
            attestation(SLSA_PROVENANCE_V1, provenance(builder_id="https://evil.example/builder"))
        ),
        Rule.PROVENANCE_BUILDER,
    ),
    (
        "CycloneDX SBOM with a null metadata",
        with_predicate(CYCLONEDX_PREDICATE, {"bomFormat": "CycloneDX", "metadata": None}),
        Rule.SBOM_SUBJECT,
    ),
    (
        "SPDX SBOM with malformed packages",
        with_predicate(SPDX_PREDICATE, {"name": "x", "documentDescribes": [["a"]], "packages": None}),
        Rule.SBOM_SUBJECT,
    ),
    ("SBOM attestation with a null predicate", with_predicate(SPDX_PREDICATE, None), Rule.SBOM_SUBJECT),
    (
        "a newer scan with a blocking finding, attached before an older clean one",
        lambda image: (
            image.predicates.__setitem__(SCAN_PREDICATE, scan(blocking=1)),
            image.extra_attestations.append(
                attestation(
                    SCAN_PREDICATE, scan(finished=NOW - dt.timedelta(hours=3), started=NOW - dt.timedelta(hours=4))
                )
            ),
        ),
        Rule.SCAN_BLOCKING,
    ),
]


def test_the_corpus_is_large_and_covers_every_content_rule() -> None:
    """At least 30 tampered or unfit artifacts, and every rule except the registry's own (image.present) is hit."""
    assert len(CORPUS) >= 30
    assert {rule for _, _, rule in CORPUS} == set(Rule) - {Rule.IMAGE_PRESENT}


@pytest.mark.parametrize(("name", "change", "rule"), CORPUS, ids=[name for name, _, _ in CORPUS])
def test_each_tampered_or_unfit_artifact_is_refused_by_its_rule(
    name: str, change: Callable[[Image], None], rule: Rule
) -> None:
    """One change to a good image; the deploy is refused, and the named rule is among the reasons."""
    image = Image()
    change(image)
    rules, _ = image.judge()
    assert rule in rules, f"{name}: refused for {rules}, expected {rule}"


GOOD: list[tuple[str, Callable[[Image], None], list[str]]] = [
    ("the good image", lambda image: None, []),
    (
        "production without a vulnerability database, under the waiver",
        with_predicate(SCAN_PREDICATE, unscanned([WAIVED])),
        [WAIVED],
    ),
    (
        "staging without a vulnerability database needs no waiver",
        lambda image: (
            image.predicates.__setitem__(SCAN_PREDICATE, scan(vulnerability_database=False, scanners=["secret"])),
            setattr(image, "environment", "staging"),
            setattr(image, "policy", POLICY.model_copy(update={"waivers": []})),
        ),
        [],
    ),
    (
        "a co-signature and a foreign attestation beside ours",
        lambda image: (
            image.signatures.append(signature(FOREIGN)),
            image.extra_attestations.append(attestation(SLSA_PROVENANCE_V1, provenance(builder_id="x"), FOREIGN)),
        ),
        [],
    ),
    (
        "signed twice (a retried signing appends): the newest scan counts",
        lambda image: image.extra_attestations.append(attestation(SCAN_PREDICATE, scan())),
        [],
    ),
    ("a scan just inside the maximum age", set_field("now", NOW + dt.timedelta(hours=22, minutes=59)), []),
    (
        "an ignore entry expiring today still suppresses",
        with_predicate(SCAN_PREDICATE, suppressed(NOW.date(), blocking=True)),
        [],
    ),
    (
        "an expired ignore entry on a finding that never blocked",
        with_predicate(SCAN_PREDICATE, suppressed(dt.date(2026, 1, 1), blocking=False)),
        [],
    ),
    ("a release tag by tag", set_field("tags", {"1.0.0": DIGEST, "1.0.0-rc": DIGEST}), []),
    (
        "a release built from a version tag",
        edited_provenance(
            lambda p: p["buildDefinition"]["externalParameters"]["source"].__setitem__("ref", "refs/tags/v1.0.0")
        ),
        [],
    ),
    (
        "the default policy, on a base image the local stack built",
        lambda image: (
            setattr(image, "policy", ReleasePolicy(scans={"require_vulnerability_scan": []})),
            setattr(image, "local_base_images", frozenset({BASE})),
        ),
        [],
    ),
    (
        "an older scan attached after the newest: the newest by its signed time counts",
        lambda image: image.extra_attestations.append(
            attestation(SCAN_PREDICATE, scan(finished=NOW - dt.timedelta(days=5), started=NOW - dt.timedelta(days=5)))
        ),
        [],
    ),
]


@pytest.mark.parametrize(("name", "change", "waived"), GOOD, ids=[name for name, _, _ in GOOD])
def test_good_releases_are_never_refused(name: str, change: Callable[[Image], None], waived: list[str]) -> None:
    """No false rejects: each good variant passes, and the waivers it relied on are reported."""
    image = Image()
    change(image)
    assert image.judge() == ([], waived), name


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("waivers: [{rule: signature.trusted, who: me, why: because I can, expires: 2030-01-01}]", "cannot be waived"),
        ("waivers: [{rule: scan.vulnerability-database, who: me, why: short, expires: 2030-01-01}]", "why"),
        ("waivers: [{rule: scan.vulnerability-database, who: me, why: long enough reason}]", "expires"),
        ("base_images: {allowed_digests: [latest]}", "not a sha256"),
        ("sboms: {required: [swid]}", "unknown SBOM formats"),
        ("scans: {max_age_hours: 0}", "max_age_hours"),
        ("scans: {required: false}", "required"),
        ("provenance: {builders: [x]}", "builders"),
        ("- just a list", "must be a mapping"),
        ("provenance: [unclosed", "not valid YAML"),
    ],
)
def test_an_invalid_policy_is_an_error_naming_the_field(document: str, problem: str) -> None:
    """A policy that cannot be read, or would waive what may not be waived, is refused with the reason."""
    with pytest.raises(ConfigError, match=problem):
        parse_release_policy(document, "release-policy.yaml")


def test_the_sample_apps_policy_parses_and_waives_only_the_missing_database() -> None:
    """The example policy is valid; its one waiver covers production's missing vulnerability database."""
    from tests.helpers import SAMPLE_APP

    policy = parse_release_policy((SAMPLE_APP / "release-policy.yaml").read_text())
    assert [w.rule for w in policy.waivers] == [Rule.SCAN_VULNERABILITY_DATABASE]
    assert policy.base_images.local_stack
    assert policy.waivers_for("production", dt.date(2027, 1, 1))
    assert not policy.waivers_for("production", dt.date(2027, 7, 1))
