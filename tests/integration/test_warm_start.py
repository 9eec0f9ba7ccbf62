"""`medianest-delivery worker`: flow runs started warm on a real process worker and the stack's Prefect server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from medianest_delivery.settings import StackSettings
from tests.helpers import stack_prefect_client, stack_prefect_env

pytestmark = pytest.mark.integration
REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAUNCHER = str(BIN / "medianest-flow-run")


@pytest.fixture(scope="module")
def settings(local_stack: StackSettings) -> StackSettings:
    from medianest_delivery.localstack.stack import stack_up

    stack_up(local_stack, {"prefect-server"})
    return local_stack


@pytest.fixture(scope="module")
def deployment(settings: StackSettings) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A process pool of its own and the report-process flow deployed on it as prefect.yaml deploys: no command
    (the warm worker makes the launcher the default)."""
    pool = f"it-warm-{uuid.uuid4().hex[:6]}"
    env = stack_prefect_env(settings)
    script = (
        "from prefect import flow\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.actions import WorkPoolCreate\n"
        f"get_client(sync_client=True).create_work_pool(WorkPoolCreate(name={pool!r}, type='process'))\n"
        f"flow.from_source(source={str(REPO_ROOT)!r}, entrypoint='tests/worker_flows.py:report_process').deploy(\n"
        f"    name={pool!r}, work_pool_name={pool!r},\n"
        "    build=False, push=False, print_next_steps=False)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield pool, f"it-report-process/{pool}", env
    with stack_prefect_client(settings) as client:
        client.delete_work_pool(pool)


@pytest.fixture(scope="module")
def worker(deployment: tuple[str, str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pool, _, env = deployment
    log_path = tmp_path_factory.mktemp("warm-worker") / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "medianest-delivery"), "worker", "--pool", pool],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    time.sleep(8)  # polling, with a spare imported
    yield log_path
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def run(deployment: tuple[str, str, dict[str, str]], *extra: str) -> tuple[int, str, str]:
    """`prefect deployment run --watch` as CI calls it: exit status, output and the flow run id."""
    _, name, env = deployment
    done = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", name, "--watch", *extra],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    run_id = done.stdout.split("UUID: ", 1)[1].split()[0] if "UUID: " in done.stdout else ""
    return done.returncode, done.stdout + done.stderr, run_id


def flow_run_process(settings: StackSettings, run_id: str) -> tuple[Any, str]:
    """The run's final state and the line its flow printed (read back from the server's logs)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with stack_prefect_client(settings) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
        deadline = time.monotonic() + 20
        while True:
            logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)])))
            printed = [log.message for log in logs if log.message.startswith("flow run process ")]
            if printed or time.monotonic() > deadline:
                return state, printed[0] if printed else ""
            time.sleep(0.5)


def test_a_run_starts_in_the_warm_spare_and_its_logs_and_state_reach_the_server(
    deployment: tuple[str, str, dict[str, str]], worker: Path, settings: StackSettings
) -> None:
    code, output, run_id = run(deployment)
    assert code == 0, output + worker.read_text()
    state, printed = flow_run_process(settings, run_id)
    assert state.is_completed()
    assert "medianest_delivery.console.warm_start" in printed, printed  # the spare ran it, not a new engine
    assert "warm start" not in worker.read_text()


def test_a_changed_source_file_sends_the_next_run_down_the_cold_path_and_the_one_after_is_warm(
    deployment: tuple[str, str, dict[str, str]], worker: Path, settings: StackSettings
) -> None:
    touched = REPO_ROOT / "flows" / "__init__.py"
    os.utime(touched)  # the waiting spare imported the code before this: it must not run it
    time.sleep(1)
    code, output, run_id = run(deployment)
    assert code == 0, output
    _, printed = flow_run_process(settings, run_id)
    assert "-m prefect.engine" in printed, printed
    time.sleep(6)  # the next spare imported the current files
    code, output, run_id = run(deployment)
    assert code == 0, output
    _, printed = flow_run_process(settings, run_id)
    assert "medianest_delivery.console.warm_start" in printed, printed


def test_a_failed_run_exits_non_zero_through_the_launcher(
    deployment: tuple[str, str, dict[str, str]], worker: Path
) -> None:
    code, output, _ = run(deployment, "--param", "sleep_seconds=not-a-number")
    assert code != 0, output


def test_the_launcher_without_a_starter_runs_the_engine_itself(settings: StackSettings) -> None:
    """No MEDIANEST_WARM_START_SOCKET (a plain `prefect worker start`): it becomes `python -m prefect.engine`."""
    env = {k: v for k, v in os.environ.items() if k != "MEDIANEST_WARM_START_SOCKET"}
    done = subprocess.run(
        [LAUNCHER, "not-a-uuid"], env={**env, **stack_prefect_env(settings)}, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Invalid flow run id" in done.stdout + done.stderr


def test_cancelling_a_warm_run_stops_its_process(
    deployment: tuple[str, str, dict[str, str]], worker: Path, settings: StackSettings
) -> None:
    from prefect.states import Cancelling

    _, name, env = deployment
    done = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", name, "--param", "sleep_seconds=120"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = done.stdout.split("UUID: ", 1)[1].split()[0]
    _, printed = flow_run_process(settings, run_id)
    assert "medianest_delivery.console.warm_start" in printed, printed
    pid = int(printed.split()[3].rstrip(":"))
    with stack_prefect_client(settings) as client:
        client.set_flow_run_state(uuid.UUID(run_id), Cancelling(), force=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            state = client.read_flow_run(uuid.UUID(run_id)).state
            if state is not None and state.is_final():
                break
            time.sleep(1)
    assert state is not None
    assert state.is_cancelled(), state
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists(), f"the cancelled run's process {pid} still runs"
