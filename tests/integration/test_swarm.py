"""Environments on the local stack's real two-node Docker Swarm: deploys, canaries and the faults a cluster has.

Each test gets a preview environment whose `EnvironmentTarget` says ``swarm``; `deliver` runs on it as on
any other runtime. Load goes through the environment's HAProxy routers on 127.0.0.1, bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import psycopg
import pytest
from pydantic import SecretStr

from blocks.runtime import EnvironmentTarget
from medianest_delivery.appconfig import DEFAULT_DATABASE_SERVER
from medianest_delivery.errors import RolloutFailedError
from medianest_delivery.localstack.swarm import LocalSwarm, SwarmNodeEngine
from medianest_delivery.rollout.loadgen import LoadReport
from medianest_delivery.rollout.router import HAProxyRouter
from medianest_delivery.rollout.runtime import LABEL
from medianest_delivery.rollout.swarm import SwarmRuntime
from medianest_delivery.settings import StackSettings
from tasks.rollout import controller
from tests.helpers import SAMPLE_APP
from tests.integration.test_deliver import FAST, docker_host, loads, router, run_deliver, tear_down

pytestmark = pytest.mark.integration
APP_CONFIG = str(SAMPLE_APP / "delivery.yaml")
SECOND_CLUSTER = "postgresql://postgres@127.0.0.1:5433"


@pytest.fixture(scope="module")
def swarm(local_stack: StackSettings) -> StackSettings:
    from medianest_delivery.localstack.stack import stack_up

    stack_up(local_stack, {"prometheus", "swarm", "archived-postgres"})
    return local_stack


def node_client(settings: StackSettings, node: str) -> Any:
    return docker.DockerClient(base_url=settings.swarm_node_host(node), timeout=30)


def node_id(settings: StackSettings, node: str) -> str:
    return str(node_client(settings, node).info()["Swarm"]["NodeID"])


@pytest.fixture(scope="module")
def on_swarm(swarm: StackSettings, releases: dict[str, Path]) -> Iterator[str]:
    """One preview environment on the Swarm for the module, first on release 1.0.0 (each test ships the other
    release over the current one); torn down (services, secrets) at the end."""
    name = f"preview-sw{uuid.uuid4().hex[:6]}"
    # Its database on the second local cluster, not the system one every other test environment uses.
    EnvironmentTarget(runtime="swarm", database_server=SecretStr(SECOND_CLUSTER)).save(name)
    try:
        run_deliver(releases["1.0.0"], name)
        yield name
    finally:
        LocalSwarm(swarm).start()  # a test that took a node down brings it back first
        tear_down(name)


@pytest.fixture(autouse=True)
def both_nodes_up(swarm: StackSettings, on_swarm: str) -> Iterator[None]:
    """A test that took a node down (or drained it) leaves both nodes ready and active for the next one, with
    the environment's replicas spread over both again, as an operator would after a node came back: the Swarm
    never moves running tasks back by itself, and a later fault would otherwise hit every replica at once."""
    yield
    LocalSwarm(swarm).start()
    spread_over_both_nodes(swarm, on_swarm)


def spread_over_both_nodes(settings: StackSettings, environment: str) -> None:
    lopsided = []
    for service in services(settings, environment):
        running = [t for t in service.tasks() if t["DesiredState"] == "running"]
        if len(running) > 1 and len({t["NodeID"] for t in running}) < 2:
            service.force_update()  # `docker service update --force`: the tasks are placed afresh, one at a time
            lopsided.append(service.name)
    deadline = time.monotonic() + 120
    while lopsided and time.monotonic() < deadline:
        time.sleep(1)
        placed = {
            s.name: [t for t in s.tasks() if t["DesiredState"] == "running"]
            for s in services(settings, environment)
            if s.name in lopsided
        }
        if all(
            len({t["NodeID"] for t in tasks}) == 2 and all(t["Status"]["State"] == "running" for t in tasks)
            for tasks in placed.values()
        ):
            break
    else:
        if lopsided:
            pytest.fail(f"{lopsided} did not spread over both nodes again")
    env = controller(environment, APP_CONFIG, docker_host())
    for component in ("backend", "frontend"):
        stable = env.stable_slot(component)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = env.router.server_states(component)
            if [live[f"{stable}{i}"] for i in range(2)] == ["UP", "UP"]:
                break
            time.sleep(1)


def serving(environment: str) -> str:
    return str(httpx.get(f"{router(environment)}/version").json()["version"])


def other_release(environment: str, releases: dict[str, Path]) -> tuple[str, Path]:
    """The release the environment does not serve now: each test ships a real change."""
    version = "1.1.0" if serving(environment) == "1.0.0" else "1.0.0"
    return version, releases[version]


def services(settings: StackSettings, environment: str) -> list[Any]:
    manager = node_client(settings, "manager")
    return list(manager.services.list(filters={"label": f"{LABEL}.environment={environment}"}))


def test_each_slot_is_a_service_with_replicas_on_both_nodes_and_the_database_url_as_a_secret(
    on_swarm: str, swarm: StackSettings
) -> None:
    env_controller = controller(on_swarm, APP_CONFIG, docker_host())
    slot = env_controller.stable_slot("backend")
    running = services(swarm, on_swarm)
    assert sorted(s.name for s in running) == [f"mn-{on_swarm}-backend-{slot}", f"mn-{on_swarm}-frontend-{slot}"]
    backend = next(s for s in running if s.name.endswith(f"backend-{slot}"))
    spec = backend.attrs["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 2
    assert spec["UpdateConfig"]["Order"] == "stop-first"
    assert spec["RollbackConfig"]["Parallelism"] == 1
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["User"] == "10001:10001"
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert spec["TaskTemplate"]["Resources"]["Limits"]["Pids"] == 512
    env = dict(item.split("=", 1) for item in container["Env"])
    prefix = env["PORT"].removesuffix("{{.Task.Slot}}")
    assert env["DATABASE_URL_FILE"] == "/run/secrets/DATABASE_URL"
    assert "DATABASE_URL" not in env
    assert not any("postgresql://" in value for value in env.values())  # no password in any service spec
    [secret] = container["Secrets"]
    assert secret["File"]["Name"] == "DATABASE_URL"
    assert secret["File"]["Mode"] == 0o400

    # Swarm placed the two replicas, one per node here (spread), each on its template port.
    tasks = [t for t in backend.tasks() if t["DesiredState"] == "running"]
    assert {t["NodeID"] for t in tasks} == {node_id(swarm, "manager"), node_id(swarm, "worker")}
    replicas = SwarmRuntime(lambda: node_client(swarm, "manager"), "manager").list(on_swarm)
    ports = sorted(r.port for r in replicas if r.component == "backend")
    assert ports == [int(f"{prefix}1"), int(f"{prefix}2")]
    for port in ports:
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200  # it reached its database
    # The replica reads the URL from the mounted file: its own role, on the environment's own database.
    expected = env_controller.app_database_url(slot)
    task = tasks[0]
    engine = node_client(swarm, "manager" if task["NodeID"] == node_id(swarm, "manager") else "worker")
    inside = engine.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
    code, output = inside.exec_run(
        [
            "python3",
            "-c",
            "import hashlib; print(hashlib.sha256(open('/run/secrets/DATABASE_URL','rb').read()).hexdigest())",
        ]
    )
    assert code == 0
    assert output.decode().strip() == hashlib.sha256(expected.encode()).hexdigest()
    assert f"_app_{slot}" in expected
    assert "@127.0.0.1:5433/" in expected
    assert f"/medianest_{on_swarm.replace('-', '_')}" in expected


def databases(server: str) -> set[str]:
    with psycopg.connect(f"{server}/postgres") as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database").fetchall()}


def test_the_environments_database_lives_on_its_targets_cluster_only(on_swarm: str) -> None:
    """The block put this environment's database on the second cluster; the system one never got it."""
    database = f"medianest_{on_swarm.replace('-', '_')}"
    assert database in databases(SECOND_CLUSTER)
    assert database not in databases(DEFAULT_DATABASE_SERVER)
    # A write through the environment's router lands in that cluster.
    created = httpx.post(f"{router(on_swarm)}/api/media", json={"title": "on 5433", "kind": "movie"})
    assert created.status_code == 201, created.text
    with psycopg.connect(f"{SECOND_CLUSTER}/{database}") as conn:
        titles = [row[0] for row in conn.execute("SELECT title FROM media").fetchall()]
    assert "on 5433" in titles


def test_a_blue_green_switch_on_the_swarm_drops_nothing_under_load(on_swarm: str, releases: dict[str, Path]) -> None:
    version, manifest = other_release(on_swarm, releases)
    backend, frontend = loads(on_swarm, seconds=240)
    try:
        summary = run_deliver(manifest, on_swarm, strategy="blue-green")
    finally:
        seen: LoadReport = backend.stop()
        answered = frontend.stop()
    assert summary["outcome"] == "promoted"
    assert seen.failed == 0, seen.by_version()
    assert answered.failed == 0, answered.by_version()
    assert serving(on_swarm) == version
    stable = controller(on_swarm, APP_CONFIG, docker_host()).stable_slot("backend")
    assert {s.name[-1] for s in services(StackSettings(), on_swarm)} == {stable}  # the previous slot was removed


def when_the_canary_has_traffic(environment: str, fault: Callable[[], None]) -> Callable[[], None]:
    """Run ``fault`` in a thread as soon as the backend's canary gets weight; returns a join that re-raises."""
    errors: list[BaseException] = []
    done = threading.Event()

    def watch() -> None:
        try:
            deadline = time.monotonic() + 300
            routers = HAProxyRouter(StackSettings().routers_dir, environment)
            while time.monotonic() < deadline:
                state = routers.load_state()
                if state and state.backends["backend"].canary_percent() > 0:
                    fault()
                    return
                time.sleep(0.2)
            errors.append(AssertionError("the canary never got traffic"))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=watch, daemon=True).start()

    def join() -> None:
        done.wait(330)
        if errors:
            raise errors[0]

    return join


def canary_through(
    environment: str, releases: dict[str, Path], fault: Callable[[], None]
) -> tuple[dict[str, Any], str, LoadReport, LoadReport]:
    """A canary of the other release under load, with ``fault`` as soon as the canary has traffic."""
    previous = serving(environment)
    version, manifest = other_release(environment, releases)
    backend, frontend = loads(environment, seconds=240)
    join = when_the_canary_has_traffic(environment, fault)
    try:
        try:
            summary = run_deliver(manifest, environment, canary_steps=[50, 100], thresholds=FAST)
        except RolloutFailedError as rolled_back:  # a judged end too: the judge saw the fault and went back
            summary = rolled_back.summary
        join()
    finally:
        seen, answered = backend.stop(), frontend.stop()
    judged = version if summary["outcome"] == "promoted" else previous
    return summary, judged, seen, answered


def assert_judged_release_serves(environment: str, summary: dict[str, Any], judged: str) -> None:
    """Whatever the verdict, the environment ends on a judged release at 100%, on replicas that answer."""
    assert summary["outcome"] in ("promoted", "rolled-back"), summary
    for _ in range(20):
        assert serving(environment) == judged
    env = controller(environment, APP_CONFIG, docker_host())
    state = env.state().backends["backend"]
    assert not state.verdict_pending
    assert state.weights[state.stable_slot] == 100


def test_a_worker_drained_mid_canary_moves_its_replicas_and_the_rollout_still_ends_judged(
    on_swarm: str, swarm: StackSettings, releases: dict[str, Path]
) -> None:
    manager = node_client(swarm, "manager")
    worker = manager.nodes.get(node_id(swarm, "worker"))

    def drain() -> None:
        worker.reload()
        spec = {**worker.attrs["Spec"], "Availability": "drain"}
        worker.update(spec)

    try:
        summary, judged, seen, answered = canary_through(on_swarm, releases, drain)
    finally:
        worker.reload()
        worker.update({**worker.attrs["Spec"], "Availability": "active"})
    assert_judged_release_serves(on_swarm, summary, judged)
    on_worker = [
        t
        for s in services(swarm, on_swarm)
        for t in s.tasks()
        if t["DesiredState"] == "running" and t["NodeID"] == worker.id
    ]
    assert on_worker == []  # the Swarm moved every replica off the drained node
    assert seen.failed <= seen.total * 0.01, seen.by_version()
    assert answered.failed <= answered.total * 0.01, answered.by_version()


def kill_node(settings: StackSettings, node: str) -> None:
    """SIGKILL a node: its replicas' processes, then its dockerd and containerd (no clean shutdown)."""
    engine = SwarmNodeEngine(settings, node)
    client = node_client(settings, node)
    pids = [c.attrs["State"]["Pid"] for c in client.containers.list()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    dockerd = engine.our_pid()
    assert dockerd is not None, f"the {node} engine was not started by the stack"
    os.killpg(dockerd, signal.SIGKILL)


def test_a_worker_killed_mid_canary_is_rescheduled_and_the_rollout_ends_judged(
    on_swarm: str, swarm: StackSettings, releases: dict[str, Path]
) -> None:
    summary, judged, seen, answered = canary_through(on_swarm, releases, lambda: kill_node(swarm, "worker"))
    assert_judged_release_serves(on_swarm, summary, judged)
    # The Swarm rescheduled the stable slot's replicas on the manager: both answer.
    env = controller(on_swarm, APP_CONFIG, docker_host())
    state = env.state().backends["backend"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        live = env.router.server_states("backend")
        if [live[f"{state.stable_slot}{i}"] for i in range(2)] == ["UP", "UP"]:
            break
        time.sleep(1)
    assert [live[f"{state.stable_slot}{i}"] for i in range(2)] == ["UP", "UP"]
    assert seen.failed <= seen.total * 0.02, seen.by_version()
    assert answered.failed <= answered.total * 0.02, answered.by_version()


def test_the_manager_restarted_mid_canary_is_waited_for_and_no_traffic_is_stranded(
    on_swarm: str, swarm: StackSettings, releases: dict[str, Path]
) -> None:
    engine = SwarmNodeEngine(swarm, "manager")

    def restart_manager() -> None:
        engine.stop()
        time.sleep(3)  # a step's traffic change or removal meets a manager that refuses connections
        engine.start()

    summary, judged, seen, answered = canary_through(on_swarm, releases, restart_manager)
    assert_judged_release_serves(on_swarm, summary, judged)
    assert seen.failed <= seen.total * 0.01, seen.by_version()
    assert answered.failed <= answered.total * 0.01, answered.by_version()
