"""The subprocess wrapper: argument lists only, failures reported with their output."""

from __future__ import annotations

import json
import sys

import pytest

from medianest_delivery.errors import CommandFailedError, ToolMissingError
from medianest_delivery.proc import run_command


def test_run_command_refuses_strings_and_reports_failures() -> None:
    """A command string is a TypeError; a non-zero exit shows the code and last output; a missing tool is named."""
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


def test_process_runs_recognises_this_process_and_rejects_others() -> None:
    """A pid is ours only when its command line ends with the arguments we started it with."""
    import os
    from pathlib import Path

    from medianest_delivery.proc import process_runs

    own = [a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a]
    assert process_runs(os.getpid(), own)
    assert not process_runs(os.getpid(), ["haproxy", "-db", "-f", "/x/haproxy.cfg"])
    assert not process_runs(2**22 + 12345, own)  # no such process
    assert not process_runs(os.getpid(), [])


def test_untrusted_commands_do_not_inherit_our_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression (review): the app's quality commands (a pull request's code) inherited PREFECT_API_AUTH_STRING
    and could read every Secret block. Untrusted commands get the environment without our credentials."""
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "medianest:s3cret")
    monkeypatch.setenv("TRIVY_PASSWORD", "registry-s3cret")
    monkeypatch.setenv("MEDIANEST_HARMLESS", "kept")
    dump = [sys.executable, "-c", "import json, os; print(json.dumps(dict(os.environ)))"]
    untrusted = json.loads(run_command(dump, untrusted=True).stdout)
    assert "PREFECT_API_AUTH_STRING" not in untrusted
    assert "TRIVY_PASSWORD" not in untrusted
    assert untrusted["MEDIANEST_HARMLESS"] == "kept"
    assert json.loads(run_command(dump).stdout)["PREFECT_API_AUTH_STRING"] == "medianest:s3cret"  # ours keep it
