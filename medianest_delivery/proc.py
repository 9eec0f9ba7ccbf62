"""Run subprocesses from argument lists only (never a shell) with clear errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from medianest_delivery.errors import CommandFailedError, ToolMissingError


def which_or_raise(tool: str, hint: str = "") -> str:
    """Return the absolute path of ``tool`` or raise naming it and how to get it."""
    found = shutil.which(tool)
    if found is None:
        venv_bin = Path(sys.executable).parent / tool  # tools installed into this venv
        if venv_bin.exists():
            return str(venv_bin)
        raise ToolMissingError(f"{tool!r} is not installed or not on PATH. {hint}".strip())
    return found


# Our own credentials, which code from the app's repository (its quality commands: a pull request's
# tests) must not inherit: with them it could read every Secret block or push images.
ORCHESTRATOR_SECRETS = frozenset(
    {"PREFECT_API_AUTH_STRING", "PREFECT_API_KEY", "TRIVY_USERNAME", "TRIVY_PASSWORD", "COSIGN_PASSWORD"}
)


def run_command(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 1800,
    ok_codes: Sequence[int] = (0,),
    untrusted: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` without a shell, capturing stdout+stderr as text.

    Raises CommandFailedError (with the output tail) when the exit code is not in
    ``ok_codes`` and ``check`` is true. ``untrusted``: the app's own code runs, so
    our credentials (`ORCHESTRATOR_SECRETS`) are left out of its environment.
    """
    if isinstance(argv, str):  # a string here would mean someone built a command line
        raise TypeError("run_command takes an argument list, not a string")
    args = [str(a) for a in argv]
    full_env = {**os.environ, **(env or {})}
    if untrusted:
        full_env = {k: v for k, v in full_env.items() if k not in ORCHESTRATOR_SECRETS}
    try:
        completed = subprocess.run(
            args,
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ToolMissingError(f"{args[0]!r} is not installed or not on PATH") from exc
    if check and completed.returncode not in ok_codes:
        raise CommandFailedError(args, completed.returncode, completed.stdout or "")
    return completed


def process_runs(pid: int, argv: Sequence[str]) -> bool:
    """Whether process `pid` is the one started with `argv` (not another that reused a stale pid file's number).

    Its /proc cmdline must end with our arguments; the program may be behind an
    interpreter (a console script runs as `python /path/script args...`).
    """
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    cmdline = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    expected = list(argv)
    if not expected or len(cmdline) < len(expected):
        return False
    tail_ok = cmdline[len(cmdline) - len(expected) + 1 :] == expected[1:]
    program = os.path.basename(expected[0])
    return tail_ok and any(os.path.basename(part) == program for part in cmdline[: len(cmdline) - len(expected) + 1])
