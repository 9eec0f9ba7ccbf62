"""Benchmark: what Prefect costs around our work, and how fast an idle worker picks a run up.

    .venv/bin/python benchmarks/orchestration.py

On the local stack's Prefect server (PostgreSQL-backed), side by side with a
plain Python loop doing the same work:
1. a flow of 200 no-op tasks: Prefect's overhead per task;
2. a flow of 20 stages that each sleep 0.5 s: overhead as a share of the stage
   work (target < 5%), split into the per-task part and the fixed per-flow part;
3. `prefect deployment run` from a shell to the flow's first task starting on an
   idle process worker: `prefect worker start` (the baseline: 10 s polling, a new
   interpreter per run) against `medianest-delivery worker` (1 s polling, a warm
   spare), 5 samples each, also counted from the run's creation.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(fn: object) -> float:
    started = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> None:
    from medianest_delivery.localstack.stack import export_environment, stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings, {"prefect-server"})
    os.environ.update(export_environment(settings))
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

    from benchmarks.orchestration_flows import noop_tasks, sleep_stages

    noop_tasks(5)  # warm imports and the client

    def wall_and_body(fn: object) -> tuple[float, float]:
        started = time.perf_counter()
        body = fn()  # type: ignore[operator]
        return time.perf_counter() - started, float(body)

    print("1. 200 no-op tasks")
    plain_noop = timed(lambda: sum(i for i in range(200)))
    noop_wall, noop_body = min(wall_and_body(lambda: noop_tasks(200)) for _ in range(3))
    print(
        f"   plain loop {plain_noop * 1000:.2f} ms; flow {noop_wall:.2f} s, of which the 200 task runs {noop_body:.2f} s"
    )

    print("2. 20 stages of 0.5 s")
    plain_stages = timed(lambda: [time.sleep(0.5) for _ in range(20)])
    stages_wall, stages_body = min(wall_and_body(lambda: sleep_stages(20, 0.5)) for _ in range(3))
    print(f"   plain {plain_stages:.2f} s; flow {stages_wall:.2f} s, of which the 20 task runs {stages_body:.2f} s")

    print("3. prefect deployment run → first task on an idle worker")
    prefect = str(Path(sys.executable).parent / "prefect")
    workers = {
        "prefect worker start (baseline)": [prefect, "worker", "start", "--type", "process"],
        "medianest-delivery worker": [str(Path(sys.executable).parent / "medianest-delivery"), "worker"],
    }
    latencies = {label: first_task_latencies(label, argv, prefect) for label, argv in workers.items()}

    per_task_noop = (noop_body - plain_noop) / 200
    overhead = stages_wall - plain_stages
    in_tasks = stages_body - plain_stages
    print("\nresults (best of 3 runs each)")
    print(f"overhead per task run (200 no-op tasks): {per_task_noop * 1000:.1f} ms")
    print(
        f"20 x 0.5 s stages: total overhead {overhead:.2f} s = {overhead / plain_stages:.1%} of the stage work "
        f"(target < 5%): task runs {in_tasks:.2f} s = {in_tasks / plain_stages:.1%}, "
        f"flow run start and finish {stages_wall - stages_body:.2f} s = {(stages_wall - stages_body) / plain_stages:.1%}"
    )
    print("deployment run → first task on an idle worker (from the CLI's start | from the run's creation):")
    baseline = statistics.median(latencies["prefect worker start (baseline)"][0])
    for label, (from_cli, from_creation) in latencies.items():
        median = statistics.median(from_cli)
        print(
            f"  {label:34} median {median:.1f} s (samples {', '.join(f'{v:.1f}' for v in from_cli)}) | "
            f"median {statistics.median(from_creation):.1f} s (max {max(from_creation):.1f}); "
            f"{median / baseline:.2f}x the baseline"
        )


SAMPLES = 5


def first_task_latencies(label: str, worker_argv: list[str], prefect: str) -> tuple[list[float], list[float]]:
    """Seconds from `prefect deployment run` (and from the run's creation) to the first task starting."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from benchmarks.orchestration_flows import first_task

    pool = f"bench-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment_id = first_task.from_source(
        source=str(ROOT), entrypoint="benchmarks/orchestration_flows.py:first_task"
    ).deploy(
        name=pool,
        work_pool_name=pool,
        build=False,
        push=False,
        print_next_steps=False,
    )
    worker = subprocess.Popen(
        [*worker_argv, "--pool", pool, "--name", f"{pool}-worker"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    from_cli: list[float] = []
    from_creation: list[float] = []
    try:
        time.sleep(15)  # the worker is up and idle
        for _ in range(SAMPLES):
            started = time.time()
            done = subprocess.run(
                [prefect, "deployment", "run", f"bench-first-task/{pool}"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            run_id = done.stdout.split("UUID: ", 1)[1].split()[0]
            with get_client(sync_client=True) as client:
                created = client.read_flow_run(uuid.UUID(run_id)).created
                while True:
                    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
                    begun = [t.start_time for t in tasks if t.start_time]
                    if begun:
                        from_cli.append(min(begun).timestamp() - started)
                        from_creation.append(min(begun).timestamp() - created.timestamp() if created else 0.0)
                        break
                    time.sleep(0.1)
            time.sleep(12)  # idle again (and a new spare ready) before the next sample
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        with get_client(sync_client=True) as client:
            client.delete_deployment(deployment_id)
            client.delete_work_pool(pool)
    print(f"   {label}: {', '.join(f'{v:.1f}' for v in from_cli)} s")
    return from_cli, from_creation


if __name__ == "__main__":
    main()
