"""Security gate, ignore-file expiry and coverage gate: pure decisions, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.findings import Finding, Scanner, Severity, parse_trivy_report
from medianest_delivery.release.gates import (
    GateOutcome,
    IgnoreEntry,
    SecurityPolicy,
    apply_ignores,
    decide_coverage_gate,
    decide_security_gate,
    latency_regressed,
    parse_ignore_file,
    read_coverage_percent,
)
from tests.helpers import load_fixture

TODAY = dt.date(2026, 11, 26)


def finding(
    scanner: Scanner, severity: Severity, rule: str = "R1", target: str = "x", lic: str | None = None
) -> Finding:
    return Finding(scanner, rule, severity, "title", target, license=lic)


@pytest.mark.parametrize(
    ("name", "findings", "expected"),
    [
        ("no findings pass", [], GateOutcome.PASS),
        ("medium vuln passes", [finding(Scanner.VULNERABILITY, Severity.MEDIUM)], GateOutcome.PASS),
        ("high vuln blocks", [finding(Scanner.VULNERABILITY, Severity.HIGH)], GateOutcome.FAIL),
        ("critical secret blocks", [finding(Scanner.SECRET, Severity.CRITICAL)], GateOutcome.FAIL),
        ("high misconfig blocks", [finding(Scanner.MISCONFIG, Severity.HIGH)], GateOutcome.FAIL),
        ("high sast blocks", [finding(Scanner.SAST, Severity.HIGH)], GateOutcome.FAIL),
        ("restricted GPL license passes", [finding(Scanner.LICENSE, Severity.HIGH, lic="GPL-2.0")], GateOutcome.PASS),
        ("forbidden license blocks", [finding(Scanner.LICENSE, Severity.LOW, lic="AGPL-3.0")], GateOutcome.FAIL),
    ],
)
def test_default_policy(name: str, findings: list[Finding], expected: GateOutcome) -> None:
    """By default HIGH and CRITICAL findings block; licenses block by name only, whatever their severity."""
    policy = SecurityPolicy(forbidden_licenses=frozenset({"AGPL-3.0"}))
    assert decide_security_gate(findings, policy, [], TODAY).outcome is expected


def test_vulnerability_fixture_fails_default_gate_and_names_blockers() -> None:
    """The default gate fails a trivy image report with HIGH and CRITICAL CVEs and names each blocking CVE."""
    findings = parse_trivy_report(load_fixture("trivy/image-vulns-debian12.json"))
    decision = decide_security_gate(findings, SecurityPolicy(), [], TODAY)
    assert decision.outcome is GateOutcome.FAIL
    assert sorted(f.rule_id for f in decision.blocking) == ["CVE-2023-4911", "CVE-2024-1135", "CVE-2024-2961"]
    assert "CVE-2024-1135" in decision.summary()


def test_per_scanner_policy_can_relax_and_tighten() -> None:
    """fail_on overrides the listed scanners' severities: vulnerabilities block only at CRITICAL, SAST from LOW."""
    policy = SecurityPolicy.from_config({"vulnerability": ["CRITICAL"], "sast": ["LOW", "MEDIUM", "HIGH"]}, [])
    findings = parse_trivy_report(load_fixture("trivy/image-vulns-debian12.json"))
    decision = decide_security_gate(findings, policy, [], TODAY)
    assert [f.rule_id for f in decision.blocking] == ["CVE-2024-1135"]
    assert policy.blocks(finding(Scanner.SAST, Severity.LOW))


@pytest.mark.parametrize(
    ("name", "fail_on", "message"),
    [
        ("unknown scanner", {"dast": ["HIGH"]}, "unknown scanner 'dast'"),
        ("unknown severity", {"secret": ["SEVERE"]}, "unknown severities"),
    ],
)
def test_bad_policy_config_names_the_problem(name: str, fail_on: dict[str, list[str]], message: str) -> None:
    """An unknown scanner or severity in fail_on is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        SecurityPolicy.from_config(fail_on, [])


def test_live_ignore_suppresses_and_expired_one_is_reported() -> None:
    """An ignore valid through today suppresses its finding; an expired one is reported and its finding blocks."""
    findings = parse_trivy_report(load_fixture("trivy/image-vulns-debian12.json"))
    ignores = [
        IgnoreEntry(id="CVE-2023-4911", reason="not reachable: no setuid binaries", expires=TODAY),
        IgnoreEntry(id="CVE-2024-2961", reason="iconv unused", expires=TODAY - dt.timedelta(days=1)),
        IgnoreEntry(id="CVE-2024-1135", reason="gunicorn not used", expires=dt.date(2027, 1, 1)),
    ]
    decision = decide_security_gate(findings, SecurityPolicy(), ignores, TODAY)
    assert [f.rule_id for f in decision.suppressed] == ["CVE-2023-4911", "CVE-2024-1135"]
    assert [e.id for e in decision.expired_ignores] == ["CVE-2024-2961"]
    assert [f.rule_id for f in decision.blocking] == ["CVE-2024-2961"]


def test_ignore_paths_limit_the_scope() -> None:
    """An ignore with paths suppresses the finding only in matching targets."""
    entry = IgnoreEntry(id="R1", reason="test data", expires=TODAY, paths=["tests/*"])
    result = apply_ignores(
        [
            finding(Scanner.SECRET, Severity.HIGH, target="tests/key.pem"),
            finding(Scanner.SECRET, Severity.HIGH, target="app/key.pem"),
        ],
        [entry],
        TODAY,
    )
    assert [f.target for f in result.kept] == ["app/key.pem"]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing reason", "ignores:\n  - id: CVE-1\n    expires: 2027-01-01\n", "reason"),
        ("missing expiry", "ignores:\n  - id: CVE-1\n    reason: because\n", "expires"),
        ("bad date", "ignores:\n  - id: CVE-1\n    reason: because\n    expires: someday\n", "expires"),
        (
            "unknown key",
            "ignores:\n  - id: CVE-1\n    reason: because\n    expires: 2027-01-01\n    until: x\n",
            "until",
        ),
        ("not yaml", "ignores: [\n", "not valid YAML"),
        ("a list", "- id: x\n", "mapping"),
    ],
)
def test_malformed_ignore_file_is_rejected_with_the_field(name: str, text: str, message: str) -> None:
    """A malformed ignore file is a ConfigError naming the missing, bad or unknown field."""
    with pytest.raises(ConfigError, match=message):
        parse_ignore_file(text, "test.yaml")


def test_ignore_file_parses() -> None:
    """A well-formed ignore file parses to entries with their id, reason and expiry date."""
    entries = parse_ignore_file("ignores:\n  - id: CVE-1\n    reason: accepted risk\n    expires: 2027-01-01\n")
    assert entries == [IgnoreEntry(id="CVE-1", reason="accepted risk", expires=dt.date(2027, 1, 1))]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("coverage json", '{"totals": {"percent_covered": 91.25}}', 91.25),
        ("cobertura", '<?xml version="1.0" ?><coverage line-rate="0.8412" branch-rate="0.5"></coverage>', 84.12),
    ],
)
def test_coverage_reports(name: str, text: str, expected: float) -> None:
    """Total coverage is read from coverage.py JSON and from Cobertura's line-rate."""
    assert read_coverage_percent(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "plain text", '{"meta": {}}', "<coverage/>"])
def test_unreadable_coverage_reports_are_errors(text: str) -> None:
    """Empty, non-report or total-less coverage files are a ConfigError, never 0%."""
    with pytest.raises(ConfigError):
        read_coverage_percent(text)


@pytest.mark.parametrize(
    ("percent", "minimum", "expected"),
    [(85.0, 85.0, GateOutcome.PASS), (84.99, 85.0, GateOutcome.FAIL), (100.0, 85.0, GateOutcome.PASS)],
)
def test_coverage_gate_threshold(percent: float, minimum: float, expected: GateOutcome) -> None:
    """Coverage at the minimum passes; anything below it fails."""
    assert decide_coverage_gate(percent, minimum) is expected


@pytest.mark.parametrize(
    ("name", "p95", "baseline", "expected"),
    [
        ("faster passes", 0.080, 0.100, False),
        ("9% worse passes", 0.109, 0.100, False),
        ("11% worse by 11 ms fails", 0.111, 0.100, True),
        ("50% worse but 1.5 ms is noise", 0.0045, 0.0030, False),
        ("20% worse by 40 ms fails", 0.240, 0.200, True),
    ],
)
def test_latency_regression(name: str, p95: float, baseline: float, expected: bool) -> None:
    """A p95 regresses only when over 10% worse than the baseline and by more than the noise floor."""
    assert latency_regressed(p95, baseline) is expected
