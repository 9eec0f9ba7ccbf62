"""Typed security findings and the parsers that turn trivy and bandit JSON into them."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from medianest_delivery.errors import ConfigError


class Severity(enum.IntEnum):
    UNKNOWN = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | None) -> Severity:
        try:
            return cls[(value or "UNKNOWN").upper()]
        except KeyError:
            return cls.UNKNOWN


class Scanner(enum.StrEnum):
    VULNERABILITY = "vulnerability"
    SECRET = "secret"
    MISCONFIG = "misconfig"
    LICENSE = "license"
    SAST = "sast"


@dataclass(frozen=True)
class Finding:
    """One problem found by one scanner in one place."""

    scanner: Scanner
    rule_id: str
    severity: Severity
    title: str
    target: str
    line: int | None = None
    package: str | None = None
    installed_version: str | None = None
    fixed_version: str | None = None
    license: str | None = None

    def key(self) -> str:
        """Stable identity used for dedupe and SARIF fingerprints."""
        return f"{self.scanner}:{self.rule_id}:{self.target}:{self.package or ''}:{self.line or ''}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scanner"] = self.scanner.value
        data["severity"] = self.severity.name
        return data


def parse_trivy_report(report: dict[str, Any], origin: str = "") -> list[Finding]:
    """Findings of a `trivy fs|image --format json` report (schema version 2).

    Misconfigurations with Status PASS are checks that passed, not findings.
    """
    if not isinstance(report, dict) or ("Results" not in report and "SchemaVersion" not in report):
        raise ConfigError(f"{origin or 'report'} is not a trivy JSON report (no SchemaVersion/Results)")
    findings: list[Finding] = []
    for result in report.get("Results") or []:
        target = str(result.get("Target", ""))
        for vuln in result.get("Vulnerabilities") or []:
            findings.append(
                Finding(
                    scanner=Scanner.VULNERABILITY,
                    rule_id=str(vuln.get("VulnerabilityID", "")),
                    severity=Severity.parse(vuln.get("Severity")),
                    title=str(vuln.get("Title") or vuln.get("VulnerabilityID", "")),
                    target=target,
                    package=vuln.get("PkgName"),
                    installed_version=vuln.get("InstalledVersion"),
                    fixed_version=vuln.get("FixedVersion") or None,
                )
            )
        for secret in result.get("Secrets") or []:
            findings.append(
                Finding(
                    scanner=Scanner.SECRET,
                    rule_id=str(secret.get("RuleID", "")),
                    severity=Severity.parse(secret.get("Severity")),
                    title=str(secret.get("Title", "")),
                    target=target,
                    line=secret.get("StartLine"),
                )
            )
        for misconf in result.get("Misconfigurations") or []:
            if misconf.get("Status", "FAIL") != "FAIL":
                continue
            cause = misconf.get("CauseMetadata") or {}
            findings.append(
                Finding(
                    scanner=Scanner.MISCONFIG,
                    rule_id=str(misconf.get("ID") or misconf.get("AVDID", "")),
                    severity=Severity.parse(misconf.get("Severity")),
                    title=str(misconf.get("Title", "")),
                    target=target,
                    line=cause.get("StartLine") or None,
                )
            )
        for lic in result.get("Licenses") or []:
            findings.append(
                Finding(
                    scanner=Scanner.LICENSE,
                    rule_id=str(lic.get("Name", "")),
                    severity=Severity.parse(lic.get("Severity")),
                    title=f"{lic.get('Category', 'unknown')} license {lic.get('Name', '')}",
                    target=str(lic.get("FilePath") or target),
                    package=lic.get("PkgName") or None,
                    license=str(lic.get("Name", "")),
                )
            )
    return findings


def parse_bandit_report(report: dict[str, Any]) -> list[Finding]:
    """Findings of `bandit -f json`; bandit's severity LOW/MEDIUM/HIGH maps directly."""
    if not isinstance(report, dict) or "results" not in report:
        raise ConfigError("not a bandit JSON report (no 'results')")
    return [
        Finding(
            scanner=Scanner.SAST,
            rule_id=str(item.get("test_id", "")),
            severity=Severity.parse(item.get("issue_severity")),
            title=f"{item.get('test_name', '')}: {item.get('issue_text', '')}",
            target=str(item.get("filename", "")),
            line=item.get("line_number"),
        )
        for item in report["results"]
    ]


def count_by_severity(findings: list[Finding]) -> dict[str, int]:
    counts = {s.name: 0 for s in sorted(Severity, reverse=True)}
    for finding in findings:
        counts[finding.severity.name] += 1
    return counts
