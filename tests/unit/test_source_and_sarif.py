"""Git identity of a build, tree digests, SARIF output and the subprocess wrapper."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from medianest_delivery.errors import CommandFailedError, ConfigError, ToolMissingError
from medianest_delivery.proc import run_command
from medianest_delivery.release.findings import parse_trivy_report
from medianest_delivery.release.sarif import build_sarif
from medianest_delivery.release.source import describe_source, tree_digest
from tests.helpers import load_fixture


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / "app.py").write_text("print('hi')\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def test_clean_checkout_is_described(repo: Path) -> None:
    info = describe_source(repo, "main")
    assert info.git_sha == git(repo, "rev-parse", "HEAD")
    assert not info.dirty
    assert info.commit_time.endswith("+00:00")


def test_dirty_tree_changes_digest(repo: Path) -> None:
    before = tree_digest(repo)
    (repo / "app.py").write_text("print('changed')\n")
    assert tree_digest(repo) != before
    assert describe_source(repo).dirty


def test_tool_outputs_do_not_change_digest(repo: Path) -> None:
    before = tree_digest(repo)
    (repo / ".reports").mkdir()
    (repo / ".reports" / "coverage.json").write_text("{}")
    (repo / ".coverage").write_text("x")
    assert tree_digest(repo) == before


@pytest.mark.parametrize(
    ("name", "ref", "message"),
    [
        ("shell metacharacters", "main;reboot", "invalid git ref"),
        ("unknown ref", "no-such-branch", "does not name a commit"),
    ],
)
def test_bad_refs(repo: Path, name: str, ref: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        describe_source(repo, ref)


def test_ref_other_than_checkout_is_refused(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "b.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "two")
    with pytest.raises(ConfigError, match="check the ref out first"):
        describe_source(repo, first)


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="not inside a git repository"):
        describe_source(plain, None)


def test_sarif_has_one_run_per_scanner_with_levels() -> None:
    findings = parse_trivy_report(load_fixture("trivy/fs-mixed-findings.json"))
    sarif = build_sarif(findings)
    assert sarif["version"] == "2.1.0"
    names = [run["tool"]["driver"]["name"] for run in sarif["runs"]]
    assert names == ["trivy-vulnerability", "trivy-secret", "trivy-misconfig", "trivy-license"]
    secret_result = sarif["runs"][1]["results"][0]
    assert (secret_result["ruleId"], secret_result["level"]) == ("aws-access-key-id", "error")
    assert secret_result["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}


def test_run_command_refuses_strings_and_reports_failures() -> None:
    with pytest.raises(TypeError, match="argument list"):
        run_command("echo hi")  # type: ignore[arg-type]
    with pytest.raises(CommandFailedError, match=r"exited with 3; last output:\nboom"):
        run_command(["python3", "-c", "import sys; print('boom'); sys.exit(3)"])
    with pytest.raises(ToolMissingError, match="no-such-tool"):
        run_command(["no-such-tool-xyz"])


def test_metacharacters_reach_the_program_verbatim() -> None:
    """No shell: `;` and `$(...)` are plain characters in an argument."""
    out = run_command(["python3", "-c", "import sys; print(sys.argv[1])", "a; echo $(id)"]).stdout
    assert out.strip() == "a; echo $(id)"
