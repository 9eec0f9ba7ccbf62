"""Parsing trivy and bandit JSON into typed findings (fixtures in trivy's real schema)."""

from __future__ import annotations

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.findings import (
    Scanner,
    Severity,
    count_by_severity,
    parse_bandit_report,
    parse_trivy_report,
)
from tests.helpers import load_fixture


def test_image_vulnerability_fixture_parses_every_vulnerability() -> None:
    """Each CVE of a trivy image report becomes a finding; "" as fixed version means no fix yet.

    Fixture: a trivy image report of a Debian 12 image (the DB cannot be downloaded here).
    """
    findings = parse_trivy_report(load_fixture("trivy/image-vulns-debian12.json"))
    assert [f.rule_id for f in findings] == [
        "CVE-2023-4911",
        "CVE-2024-2961",
        "CVE-2023-5678",
        "CVE-2011-3374",
        "CVE-2024-1135",
    ]
    gunicorn = findings[-1]
    assert (gunicorn.scanner, gunicorn.severity, gunicorn.package, gunicorn.fixed_version) == (
        Scanner.VULNERABILITY,
        Severity.CRITICAL,
        "gunicorn",
        "22.0.0",
    )
    assert findings[3].fixed_version is None  # "" in trivy means no fix yet


def test_fs_fixture_keeps_failed_misconfigs_secrets_and_licenses() -> None:
    """A trivy fs report yields vulnerabilities, secrets, failed misconfigurations and licenses; passed checks are dropped."""
    findings = parse_trivy_report(load_fixture("trivy/fs-mixed-findings.json"))
    by_scanner = {s: [f.rule_id for f in findings if f.scanner is s] for s in Scanner}
    assert by_scanner == {
        Scanner.VULNERABILITY: ["CVE-2024-35195"],
        Scanner.SECRET: ["aws-access-key-id"],
        Scanner.MISCONFIG: ["DS-0002"],  # DS-0026 has Status PASS: not a finding
        Scanner.LICENSE: ["AGPL-3.0", "MIT"],
        Scanner.SAST: [],
    }
    secret = next(f for f in findings if f.scanner is Scanner.SECRET)
    assert (secret.target, secret.line) == ("deploy/creds.env", 1)


def test_bandit_report_parses_to_sast_findings() -> None:
    """Bandit results become SAST findings with bandit's severities."""
    findings = parse_bandit_report(load_fixture("bandit/medianest-sample.json"))
    assert {(f.rule_id, f.severity) for f in findings} == {("B101", Severity.LOW), ("B310", Severity.MEDIUM)}
    assert all(f.scanner is Scanner.SAST for f in findings)


@pytest.mark.parametrize(
    ("name", "report", "parser"),
    [
        ("trivy: not a dict", [], parse_trivy_report),
        ("trivy: unrelated JSON", {"foo": 1}, parse_trivy_report),
        ("bandit: no results", {"errors": []}, parse_bandit_report),
    ],
)
def test_unrecognised_reports_are_rejected(name: str, report: object, parser: object) -> None:
    """JSON that is not a trivy or bandit report is a ConfigError, not an empty list of findings."""
    with pytest.raises(ConfigError):
        parser(report)  # type: ignore[operator]


def test_unknown_severity_maps_to_unknown_and_counts() -> None:
    """An unknown severity parses as UNKNOWN; counts cover every severity, zeros included."""
    assert Severity.parse("weird") is Severity.UNKNOWN
    findings = parse_trivy_report(load_fixture("trivy/image-vulns-debian12.json"))
    assert count_by_severity(findings) == {"CRITICAL": 1, "HIGH": 2, "MEDIUM": 1, "LOW": 1, "UNKNOWN": 0}
