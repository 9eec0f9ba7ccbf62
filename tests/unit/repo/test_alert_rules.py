"""The alert rules pass `promtool check rules` and their own promtool unit tests."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import REPO_ROOT

RULES = REPO_ROOT / "deployments" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    """The promtool binary on PATH; its absence fails the test with how to install it."""
    path = shutil.which("promtool")
    assert path, "promtool comes with Debian's prometheus package: run `make deps`"
    return path


def test_rules_are_valid(promtool: str) -> None:
    """`promtool check rules` accepts alerts.yml and finds its 4 rules."""
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES / "alerts.yml")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    """The rules' own promtool unit tests (alerts.test.yml) pass."""
    result = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yml"], cwd=RULES, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
