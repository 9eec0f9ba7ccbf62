"""What an image's scan found, as an attestation in cosign's vuln/v1 predicate.

build-and-publish signs one per image; deploys read it back through the release
policy (policy.py): how old the scan is, whether the vulnerability database was
there, what still blocks, and which ignore entries suppressed what, with their
expiry, so that an entry that expires after the build stops a later deploy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from medianest_delivery.release.findings import Finding, Scanner, count_by_severity
from medianest_delivery.release.gates import IgnoreEntry, SecurityPolicy, decide_security_gate

SCANNER_URI = "pkg:github/aquasecurity/trivy"


@dataclass(frozen=True)
class Suppression:
    """A finding an ignore entry suppressed: which entry, until when, and whether the finding would block."""

    id: str
    expires: dt.date
    blocking: bool


@dataclass(frozen=True)
class ScanResult:
    scanners: list[str]
    vulnerability_database: bool
    started: dt.datetime
    finished: dt.datetime
    findings: dict[str, dict[str, int]] = field(default_factory=dict)
    blocking: int = 0
    suppressions: list[Suppression] = field(default_factory=list)
    waivers: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    scanner_version: str = ""

    def to_predicate(self) -> dict[str, Any]:
        """cosign's vuln/v1 layout; our verdict lives in scanner.result."""
        return {
            "invocation": {"parameters": self.scanners, "uri": "", "event_id": "", "builder.id": ""},
            "scanner": {
                "uri": f"{SCANNER_URI}@{self.scanner_version}" if self.scanner_version else SCANNER_URI,
                "version": self.scanner_version,
                "db": {"uri": "", "version": "present" if self.vulnerability_database else "absent"},
                "result": {
                    "scanners": self.scanners,
                    "vulnerabilityDatabase": self.vulnerability_database,
                    "findings": self.findings,
                    "blocking": self.blocking,
                    "suppressions": [
                        {"id": s.id, "expires": s.expires.isoformat(), "blocking": s.blocking}
                        for s in self.suppressions
                    ],
                    "waivers": self.waivers,
                    "notes": self.notes,
                },
            },
            "metadata": {"scanStartedOn": self.started.isoformat(), "scanFinishedOn": self.finished.isoformat()},
        }

    @classmethod
    def from_predicate(cls, predicate: Any) -> ScanResult | str:
        """The scan result, or why the predicate is not one of ours (a string, for the scan.format rule)."""
        try:
            result = predicate["scanner"]["result"]
            started = _utc(predicate["metadata"]["scanStartedOn"])
            finished = _utc(predicate["metadata"]["scanFinishedOn"])
            database = result["vulnerabilityDatabase"]
            blocking = result["blocking"]
            if not isinstance(database, bool) or not isinstance(blocking, int) or blocking < 0:
                return "scan predicate has a non-boolean database flag or a bad blocking count"
            suppressions = [
                Suppression(str(s["id"]), dt.date.fromisoformat(s["expires"]), bool(s["blocking"]))
                for s in result.get("suppressions", [])
            ]
            return cls(
                scanners=[str(s) for s in result.get("scanners", [])],
                vulnerability_database=database,
                started=started,
                finished=finished,
                findings=dict(result.get("findings", {})),
                blocking=blocking,
                suppressions=suppressions,
                waivers=[str(w) for w in result.get("waivers", [])],
                notes=[str(n) for n in result.get("notes", [])],
                scanner_version=str(predicate["scanner"].get("version", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return f"scan predicate is malformed ({type(exc).__name__}: {exc})"


def _utc(value: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def summarize_image_scan(
    findings: list[Finding],
    policy: SecurityPolicy,
    ignores: list[IgnoreEntry],
    *,
    scanners: list[str],
    started: dt.datetime,
    finished: dt.datetime,
    notes: list[str],
    waivers: list[str],
    scanner_version: str = "",
) -> ScanResult:
    """One image's scan, judged by the same gate as the build (blocking counts, ignore entries used)."""
    decision = decide_security_gate(findings, policy, ignores, finished.date())
    live = [e for e in ignores if e.expires >= finished.date()]
    suppressions = sorted(
        {
            Suppression(entry.id, entry.expires, policy.blocks(found))
            for found in decision.suppressed
            for entry in live
            if entry.matches(found)
        },
        key=lambda s: (s.id, s.expires, s.blocking),
    )
    return ScanResult(
        scanners=scanners,
        vulnerability_database="vuln" in scanners,
        started=started,
        finished=finished,
        findings={s.value: count_by_severity([f for f in decision.kept if f.scanner is s]) for s in Scanner},
        blocking=len(decision.blocking),
        suppressions=suppressions,
        waivers=waivers,
        notes=notes,
        scanner_version=scanner_version,
    )
