"""SARIF 2.1.0 for GitHub code scanning: one run per scanner, from typed findings."""

from __future__ import annotations

import hashlib
from typing import Any

from medianest_delivery.release.findings import Finding, Scanner, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.UNKNOWN: "note",
}
# GitHub sorts alerts by this 0-10 score.
_SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "2.0",
    Severity.UNKNOWN: "0.0",
}
_TOOL = {
    Scanner.VULNERABILITY: "trivy",
    Scanner.SECRET: "trivy",
    Scanner.MISCONFIG: "trivy",
    Scanner.LICENSE: "trivy",
    Scanner.SAST: "bandit",
}


def _result(finding: Finding) -> dict[str, Any]:
    location: dict[str, Any] = {"artifactLocation": {"uri": finding.target or "."}}
    if finding.line:
        location["region"] = {"startLine": int(finding.line)}
    text = finding.title
    if finding.package:
        text += f" (package {finding.package} {finding.installed_version or ''}".rstrip() + ")"
    if finding.fixed_version:
        text += f"; fixed in {finding.fixed_version}"
    return {
        "ruleId": finding.rule_id,
        "level": _LEVEL[finding.severity],
        "message": {"text": text},
        "locations": [{"physicalLocation": location}],
        "partialFingerprints": {"findingKey/v1": hashlib.sha256(finding.key().encode()).hexdigest()},
    }


def build_sarif(findings: list[Finding]) -> dict[str, Any]:
    runs = []
    for scanner in Scanner:
        selected = [f for f in findings if f.scanner is scanner]
        if not selected:
            continue
        rules: dict[str, dict[str, Any]] = {}
        for finding in selected:
            rules.setdefault(
                finding.rule_id,
                {
                    "id": finding.rule_id,
                    "shortDescription": {"text": finding.title[:200] or finding.rule_id},
                    "properties": {
                        "security-severity": _SECURITY_SEVERITY[finding.severity],
                        "tags": ["security", scanner.value],
                    },
                },
            )
        runs.append(
            {
                "tool": {
                    "driver": {
                        "name": f"{_TOOL[scanner]}-{scanner.value}",
                        "informationUri": "https://github.com/medianest/delivery",
                        "rules": list(rules.values()),
                    }
                },
                "results": [_result(f) for f in selected],
            }
        )
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": runs}
