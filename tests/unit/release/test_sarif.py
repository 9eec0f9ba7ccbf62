"""SARIF output for code scanning, built from typed findings."""

from __future__ import annotations

from medianest_delivery.release.findings import parse_trivy_report
from medianest_delivery.release.sarif import build_sarif
from tests.helpers import load_fixture


def test_sarif_has_one_run_per_scanner_with_levels() -> None:
    """SARIF 2.1.0 with one run per scanner that found something; a secret is an error with its line."""
    findings = parse_trivy_report(load_fixture("trivy/fs-mixed-findings.json"))
    sarif = build_sarif(findings)
    assert sarif["version"] == "2.1.0"
    names = [run["tool"]["driver"]["name"] for run in sarif["runs"]]
    assert names == ["trivy-vulnerability", "trivy-secret", "trivy-misconfig", "trivy-license"]
    secret_result = sarif["runs"][1]["results"][0]
    assert (secret_result["ruleId"], secret_result["level"]) == ("aws-access-key-id", "error")
    assert secret_result["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
