"""The local stack is idempotent and `down` stops only what it started; the CLI has help."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medianest_delivery.console.cli import app
from medianest_delivery.localstack.stack import stack_down, stack_status, stack_up
from medianest_delivery.settings import StackSettings

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_second_up_is_a_no_op(local_stack: StackSettings) -> None:
    before = {s.name: s for s in stack_status(local_stack)}
    after = {s.name: s for s in stack_up(local_stack, {"docker", "registry", "base-image"})}
    for name in ("docker", "registry", "base-image"):
        assert after[name].running, name
        assert after[name].detail == before[name].detail, f"{name} was restarted"


def test_down_stops_only_what_it_started(local_stack: StackSettings, tmp_path: Path) -> None:
    """A second stack (own state dir, own registry port) sees the shared dockerd as external."""
    other = dataclasses.replace(local_stack, state_dir=tmp_path / "state", registry_port=free_port())
    stack_up(other, {"docker", "registry"})
    statuses = {s.name: s for s in stack_status(other)}
    assert statuses["registry"].started_by_us
    assert statuses["registry"].running
    assert statuses["docker"].running
    assert not statuses["docker"].started_by_us
    assert (tmp_path / "state" / "registry" / "config.yml").read_text().count("127.0.0.1") == 1

    assert stack_down(other) == ["registry"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{other.registry_host}/v2/", timeout=2)
    assert all(s.running for s in stack_status(local_stack) if s.name in ("docker", "registry"))


def test_registry_and_docker_bind_loopback_only(local_stack: StackSettings) -> None:
    """Every listener of the stack is on 127.0.0.1 (network rule)."""
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True, check=False).stdout
    registry_lines = [line for line in out.splitlines() if f":{local_stack.registry_port} " in line]
    assert registry_lines, out
    assert all("127.0.0.1:" in line for line in registry_lines)


@pytest.mark.parametrize(
    "args",
    [[], ["stack"], ["stack", "up"], ["stack", "down"], ["stack", "status"], ["stack", "env"], ["demo"], ["build"]],
)
def test_every_command_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_console_script_status_reports_components(local_stack: StackSettings) -> None:
    script = Path(sys.executable).parent / "medianest-delivery"
    result = subprocess.run([str(script), "stack", "status"], capture_output=True, text=True, check=False)
    for name in ("docker", "registry", "prefect-server", "base-image"):
        assert name in result.stdout


def test_build_from_a_fresh_shell_runs_on_the_stacks_server(local_stack: StackSettings, tmp_path: Path) -> None:
    """`medianest-delivery build` with no PREFECT_API_URL and an empty Prefect home (a fresh machine): the flow
    run is on the stack's server, where the UI shows it, never on a temporary one.

    Regression: the CLI set PREFECT_API_URL in os.environ after Prefect had read its settings, so `build` and
    `demo` ran on a temporary server and the run links they printed led nowhere.
    """
    import os

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tests.helpers import stack_prefect_client

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    script = Path(sys.executable).parent / "medianest-delivery"
    result = subprocess.run([str(script), "build"], env=env, capture_output=True, text=True, timeout=900, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "temporary server" not in output
    run_ids = {line.rsplit("/", 1)[-1].strip() for line in output.splitlines() if "/runs/flow-run/" in line}
    assert run_ids, output
    with stack_prefect_client(local_stack) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(run_ids))))
    assert [run.name for run in runs], f"none of {run_ids} is on the stack's server"
