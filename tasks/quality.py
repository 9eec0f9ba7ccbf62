"""Quality gate: the app's own commands, then the coverage threshold."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from medianest_delivery.errors import ConfigError, GateFailedError
from medianest_delivery.proc import run_command
from medianest_delivery.release.gates import GateOutcome, decide_coverage_gate, read_coverage_percent
from tasks.policies import CACHE_EXPIRATION, digest_key


@task(
    name="run-quality-command",
    task_run_name="quality: {name}",
    cache_key_fn=digest_key("name", "argv", "cwd", "tree_digest"),  # cwd: commands write reports there
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
def run_quality_command(name: str, argv: list[str], cwd: str, tree_digest: str, timeout: float = 900) -> str:
    """Run one configured command; a non-zero exit fails with argv and output tail.

    The command is the app's code (a pull request's, in feature-ci): it runs without our credentials.
    """
    completed = run_command(argv, cwd=cwd, timeout=timeout, untrusted=True)
    get_run_logger().info("%s passed: %s", name, " ".join(argv))
    return "\n".join(completed.stdout.splitlines()[-20:])


@task(
    name="gate-coverage",
    task_run_name="quality: coverage gate",
    cache_key_fn=digest_key("report", "minimum", "tree_digest"),
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
)
def gate_coverage(report: str, minimum: float, tree_digest: str) -> float:
    """Read total coverage from the report and fail below ``minimum`` percent."""
    path = Path(report)
    if not path.is_file():
        raise ConfigError(f"coverage report {path} was not produced by the quality commands")
    percent = read_coverage_percent(path.read_text(), str(path))
    if decide_coverage_gate(percent, minimum) is GateOutcome.FAIL:
        raise GateFailedError(f"coverage {percent:.1f}% is below the required {minimum:.1f}% ({path})")
    get_run_logger().info("coverage %.1f%% >= %.1f%%", percent, minimum)
    return percent
