"""Gate decisions: ignore-file expiry, security policy, coverage. Pure functions."""

from __future__ import annotations

import datetime as dt
import enum
import fnmatch
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from medianest_delivery.errors import ConfigError
from medianest_delivery.release.findings import Finding, Scanner, Severity
from medianest_delivery.release.yamldoc import parse_yaml_model

BLOCKING_BY_DEFAULT = frozenset({Severity.CRITICAL, Severity.HIGH})


class GateOutcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"


class IgnoreEntry(BaseModel):
    """An accepted finding: its rule id, why it is accepted, and until when."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    reason: str = Field(min_length=3)
    expires: dt.date
    paths: list[str] = Field(default_factory=list, description="Glob patterns; empty = anywhere")

    def matches(self, finding: Finding) -> bool:
        if finding.rule_id != self.id:
            return False
        return not self.paths or any(fnmatch.fnmatch(finding.target, p) for p in self.paths)


class _IgnoreFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ignores: list[IgnoreEntry] = Field(default_factory=list)


def parse_ignore_file(text: str, origin: str = "ignore file") -> list[IgnoreEntry]:
    """Parse the YAML ignore file; every entry must carry a reason and an expiry date."""
    return parse_yaml_model(_IgnoreFile, text, origin).ignores


@dataclass(frozen=True)
class SuppressionResult:
    kept: list[Finding]
    suppressed: list[Finding]
    expired: list[IgnoreEntry]


def apply_ignores(findings: list[Finding], ignores: list[IgnoreEntry], today: dt.date) -> SuppressionResult:
    """Drop findings matched by a live entry. Expired entries suppress nothing and are reported.

    An entry expiring today is still live; from tomorrow it is expired.
    """
    live = [e for e in ignores if e.expires >= today]
    expired = [e for e in ignores if e.expires < today]
    kept: list[Finding] = []
    suppressed: list[Finding] = []
    for finding in findings:
        (suppressed if any(e.matches(finding) for e in live) else kept).append(finding)
    return SuppressionResult(kept, suppressed, expired)


@dataclass(frozen=True)
class SecurityPolicy:
    """Which severities block, per scanner, and which licenses are forbidden outright.

    Licenses are gated by name by default: a Debian image is full of GPL packages
    that trivy rates HIGH ("restricted"), which is fine for a service we run.
    """

    fail_on: dict[Scanner, frozenset[Severity]] = field(
        default_factory=lambda: {
            Scanner.VULNERABILITY: BLOCKING_BY_DEFAULT,
            Scanner.SECRET: BLOCKING_BY_DEFAULT,
            Scanner.MISCONFIG: BLOCKING_BY_DEFAULT,
            Scanner.SAST: BLOCKING_BY_DEFAULT,
            Scanner.LICENSE: frozenset(),
        }
    )
    forbidden_licenses: frozenset[str] = frozenset()

    @classmethod
    def from_config(cls, fail_on: dict[str, list[str]], forbidden_licenses: list[str]) -> SecurityPolicy:
        policy = cls(forbidden_licenses=frozenset(forbidden_licenses))
        merged = dict(policy.fail_on)
        for scanner_name, severities in fail_on.items():
            try:
                scanner = Scanner(scanner_name)
            except ValueError as exc:
                known = ", ".join(s.value for s in Scanner)
                raise ConfigError(f"unknown scanner {scanner_name!r} in fail_on; known: {known}") from exc
            unknown = [s for s in severities if s.upper() not in Severity.__members__]
            if unknown:
                raise ConfigError(f"unknown severities {unknown} for scanner {scanner_name!r}")
            merged[scanner] = frozenset(Severity[s.upper()] for s in severities)
        return cls(fail_on=merged, forbidden_licenses=policy.forbidden_licenses)

    def blocks(self, finding: Finding) -> bool:
        if finding.scanner is Scanner.LICENSE and finding.license in self.forbidden_licenses:
            return True
        return finding.severity in self.fail_on.get(finding.scanner, BLOCKING_BY_DEFAULT)


@dataclass(frozen=True)
class SecurityDecision:
    outcome: GateOutcome
    blocking: list[Finding]
    kept: list[Finding]
    suppressed: list[Finding]
    expired_ignores: list[IgnoreEntry]

    def summary(self) -> str:
        if self.outcome is GateOutcome.PASS:
            return f"security gate passed ({len(self.kept)} non-blocking findings, {len(self.suppressed)} ignored)"
        worst = ", ".join(f"{f.scanner}:{f.rule_id} ({f.severity.name}) in {f.target}" for f in self.blocking[:10])
        return f"security gate failed: {len(self.blocking)} blocking findings: {worst}"


def decide_security_gate(
    findings: list[Finding], policy: SecurityPolicy, ignores: list[IgnoreEntry], today: dt.date
) -> SecurityDecision:
    suppression = apply_ignores(findings, ignores, today)
    blocking = [f for f in suppression.kept if policy.blocks(f)]
    outcome = GateOutcome.FAIL if blocking else GateOutcome.PASS
    return SecurityDecision(outcome, blocking, suppression.kept, suppression.suppressed, suppression.expired)


def read_coverage_percent(text: str, origin: str = "coverage report") -> float:
    """Total line coverage in percent from coverage.py JSON or Cobertura XML."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data: Any = json.loads(text)
            return float(data["totals"]["percent_covered"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{origin}: coverage JSON without totals.percent_covered") from exc
    if stripped.startswith("<"):
        try:
            root = ET.fromstring(text)  # noqa: S314 - our own report
            return float(root.attrib["line-rate"]) * 100.0
        except (ET.ParseError, KeyError, ValueError) as exc:
            raise ConfigError(f"{origin}: Cobertura XML without a line-rate") from exc
    raise ConfigError(f"{origin} is neither coverage JSON nor Cobertura XML")


def decide_coverage_gate(percent: float, minimum: float) -> GateOutcome:
    return GateOutcome.PASS if percent >= minimum else GateOutcome.FAIL


PERF_REGRESSION_LIMIT = 0.10  # strategy: < 10% performance degradation
# Below a few milliseconds, 10% is scheduler noise: a regression must also exceed this absolute margin.
PERF_NOISE_FLOOR_SECONDS = 0.005


def latency_regressed(p95: float, baseline: float) -> bool:
    """More than 10% worse than the previous release's p95, and by more than the noise floor.

    >>> latency_regressed(0.0033, 0.0030), latency_regressed(0.120, 0.100), latency_regressed(0.105, 0.100)
    (False, True, False)
    """
    return p95 > baseline * (1 + PERF_REGRESSION_LIMIT) and p95 - baseline > PERF_NOISE_FLOOR_SECONDS
