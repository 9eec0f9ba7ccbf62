"""The production setting: the Prefect server on PostgreSQL and two workers on one pool share the runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.settings import StackSettings
from tests.helpers import REPO_ROOT, stack_prefect_client, stack_prefect_env

pytestmark = pytest.mark.integration
PREFECT = str(Path(sys.executable).parent / "prefect")


def test_two_workers_share_a_batch_of_runs(tmp_path: Path) -> None:
    settings = StackSettings()
    assert settings.prefect_database_url is not None, "the stack's Prefect server runs on PostgreSQL"
    stack_up(settings, {"prefect-server"})
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/prefect") as conn:
        assert conn.execute("SELECT count(*) FROM deployment").fetchone() is not None  # Prefect's own tables

    from prefect.client.schemas.actions import WorkPoolCreate

    from medianest_delivery.localstack.prefect_api import stack_prefect_settings
    from tests.worker_flows import record_worker

    pool = f"it-shared-{uuid.uuid4().hex[:6]}"
    out = tmp_path / "runs"
    out.mkdir()
    env = stack_prefect_env(settings, PREFECT_WORKER_QUERY_SECONDS="1")
    with stack_prefect_settings(settings):
        with stack_prefect_client(settings) as client:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        deployment_id = record_worker.from_source(
            source=str(REPO_ROOT), entrypoint="tests/worker_flows.py:record_worker"
        ).deploy(name="shared", work_pool_name=pool, build=False, push=False, print_next_steps=False)
    workers = [
        subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--name", f"{pool}-{n}", "--limit", "2"],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for n in (1, 2)
    ]
    try:
        with stack_prefect_client(settings) as client:
            runs = [
                client.create_flow_run_from_deployment(deployment_id, parameters={"out_dir": str(out)})
                for _ in range(8)
            ]
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                states = [client.read_flow_run(r.id).state for r in runs]
                if all(s is not None and s.is_final() for s in states):
                    break
                time.sleep(1)
        assert all(s is not None and s.is_completed() for s in states), [s.name for s in states if s]
        ran_by = [int(p.read_text()) for p in out.glob("*.pid")]
        assert len(ran_by) == 8
        assert set(ran_by) == {w.pid for w in workers}, "both workers took runs from the one pool"
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:  # a worker slow to stop on a loaded machine must not fail the test
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        with stack_prefect_client(settings) as client:
            client.delete_deployment(deployment_id)
            client.delete_work_pool(pool)
