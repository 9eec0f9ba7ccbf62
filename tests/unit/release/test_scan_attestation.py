"""The scan attestation: one image's scan judged like the build gate, in cosign's vuln/v1 layout, read back."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.release.findings import Finding, Scanner, Severity
from medianest_delivery.release.gates import IgnoreEntry, SecurityPolicy
from medianest_delivery.release.scan_attestation import ScanResult, Suppression, summarize_image_scan

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def finding(rule: str, severity: Severity, scanner: Scanner = Scanner.VULNERABILITY) -> Finding:
    return Finding(scanner, rule, severity, f"{rule} title", "debian 12", package="openssl")


def summarize(findings: list[Finding], ignores: list[IgnoreEntry], scanners: list[str]) -> ScanResult:
    return summarize_image_scan(
        findings,
        SecurityPolicy(),
        ignores,
        scanners=scanners,
        started=T0,
        finished=T0 + dt.timedelta(seconds=20),
        notes=[],
        waivers=["w"],
        scanner_version="0.76.0",
    )


def test_blocking_counts_and_suppressions_record_the_entry_and_whether_it_hid_a_blocker() -> None:
    """A CRITICAL hidden by an ignore entry is recorded as a blocking suppression with its expiry; an unhidden
    HIGH counts as blocking; a LOW is neither."""
    entry = IgnoreEntry(id="CVE-1", reason="fixed upstream soon", expires=dt.date(2026, 12, 20))
    result = summarize(
        [finding("CVE-1", Severity.CRITICAL), finding("CVE-2", Severity.HIGH), finding("CVE-3", Severity.LOW)],
        [entry],
        ["vuln", "secret"],
    )
    assert result.blocking == 1
    assert result.suppressions == [Suppression("CVE-1", dt.date(2026, 12, 20), True)]
    assert result.vulnerability_database
    assert (result.findings["vulnerability"]["HIGH"], result.findings["vulnerability"]["CRITICAL"]) == (1, 0)


def test_an_entry_expired_at_scan_time_suppresses_nothing() -> None:
    """Expired before the scan: the finding is kept (and blocks), nothing is recorded as suppressed."""
    entry = IgnoreEntry(id="CVE-1", reason="old acceptance", expires=dt.date(2026, 11, 1))
    result = summarize([finding("CVE-1", Severity.CRITICAL)], [entry], ["vuln"])
    assert (result.blocking, result.suppressions) == (1, [])


def test_without_the_vuln_scanner_the_database_is_recorded_absent() -> None:
    """trivy ran secret and license only: the attestation says the vulnerability database was absent."""
    result = summarize([], [], ["secret", "license"])
    assert not result.vulnerability_database
    assert result.to_predicate()["scanner"]["db"]["version"] == "absent"


def test_predicate_round_trips() -> None:
    """What the build signs is what the deploy reads."""
    entry = IgnoreEntry(id="CVE-1", reason="fixed upstream soon", expires=dt.date(2026, 12, 20))
    result = summarize([finding("CVE-1", Severity.CRITICAL)], [entry], ["vuln"])
    predicate = result.to_predicate()
    assert predicate["scanner"]["uri"] == "pkg:github/aquasecurity/trivy@0.76.0"
    assert predicate["metadata"]["scanFinishedOn"] == "2026-12-01T10:00:20+00:00"
    assert ScanResult.from_predicate(predicate) == result


@pytest.mark.parametrize(
    "predicate",
    [
        None,
        {},
        {"scanner": {"result": {}}, "metadata": {}},
        {
            "scanner": {"result": {"vulnerabilityDatabase": "yes", "blocking": 0}},
            "metadata": {"scanStartedOn": "2026-12-01T10:00:00", "scanFinishedOn": "2026-12-01T10:00:00"},
        },
        {
            "scanner": {"result": {"vulnerabilityDatabase": True, "blocking": 0}},
            "metadata": {"scanStartedOn": "yesterday", "scanFinishedOn": "2026-12-01T10:00:00"},
        },
    ],
)
def test_a_malformed_predicate_is_reported_not_raised(predicate: object) -> None:
    """Garbage in the attestation becomes a reason (for the scan.format rule), never an exception."""
    assert isinstance(ScanResult.from_predicate(predicate), str)
