"""Deployments the way MediaNest runs them: `prefect deploy --all`, a process worker, and
`prefect deployment run ... --watch` from a shell whose exit status CI can use."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.settings import StackSettings
from tests.helpers import REPO_ROOT, stack_prefect_client, stack_prefect_env

pytestmark = pytest.mark.integration
PREFECT = str(Path(sys.executable).parent / "prefect")

EXPECTED_SCHEDULES = {
    "nightly-backup/nightly": "0 2 * * *",
    "validate-backup/nightly": "0 4 * * *",
    "base-backup/daily": "30 1 * * *",
    "verify-repository/daily": "0 5 * * *",
    "dr-drill/weekly": "0 6 * * 0",
    "dora-report/daily": "0 7 * * *",
    "preview-cleanup/nightly": "30 3 * * *",
}


def stack_env(settings: StackSettings) -> dict[str, str]:
    return stack_prefect_env(settings, MEDIANEST_DELIVERY_HOME=str(REPO_ROOT))


def prefect_cli(argv: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PREFECT, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def api_client(settings: StackSettings) -> Any:
    """A client of the stack's server: prefect read its settings at import, so point it there explicitly."""
    return stack_prefect_client(settings)


@pytest.fixture(scope="module")
def settings() -> StackSettings:
    stack = StackSettings()
    stack_up(stack, {"prefect-server", "pushgateway"})
    return stack


@pytest.fixture(scope="module")
def deployed(settings: StackSettings) -> dict[str, Any]:
    env = stack_env(settings)
    for argv in (
        ["work-pool", "create", "medianest-process", "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all"],
    ):
        done = prefect_cli(argv, env)
        assert done.returncode == 0, done.stdout + done.stderr
    with api_client(settings) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in client.read_deployments()}


@pytest.fixture(scope="module")
def worker(
    deployed: dict[str, Any], settings: StackSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One process worker on the pool, as the README tells an operator to start it (warm starts)."""
    name = f"it-worker-{uuid.uuid4().hex[:6]}"
    log = (tmp_path_factory.mktemp("worker") / "worker.log").open("w")
    proc = subprocess.Popen(
        [str(Path(PREFECT).parent / "medianest-delivery"), "worker", "--pool", "medianest-process", "--name", name],
        cwd=REPO_ROOT,
        env=stack_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield name
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)
    log.close()


def test_disaster_recovery_and_dora_schedules_are_registered_in_utc(deployed: dict[str, Any]) -> None:
    for name, cron in EXPECTED_SCHEDULES.items():
        assert name in deployed, f"{name} not registered"
        schedules = deployed[name].schedules
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in schedules] == [(cron, "UTC", True)], name


def test_every_flow_is_deployed_on_the_process_pool(deployed: dict[str, Any]) -> None:
    wanted = {
        "build-and-publish/main",
        "deliver/production",
        "deliver/staging",
        "feature-ci/pull-request",
        "rollback/production",
        "nightly-backup/nightly",
        "validate-backup/nightly",
        "dr-drill/weekly",
        "dora-report/daily",
    }
    assert wanted <= set(deployed)
    declared = prefect_yaml_deployments()
    assert len(declared) == len(yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"])
    assert {deployed[name].work_pool_name for name in declared} == {"medianest-process"}


def prefect_yaml_deployments() -> set[str]:
    """'<flow name>/<deployment name>' of every deployment prefect.yaml declares."""
    import importlib

    names = set()
    for entry in yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]:
        path, _, attribute = entry["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        names.add(f"{getattr(module, attribute).name}/{entry['name']}")
    return names


def test_a_cli_run_completes_on_the_worker_with_its_artifacts(worker: str, settings: StackSettings) -> None:
    """`prefect deployment run --watch` exits 0 once the worker has run the flow to Completed."""
    done = prefect_cli(
        ["deployment", "run", "dora-report/daily", "--watch", "--watch-timeout", "300"], stack_env(settings)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
    assert match, done.stdout
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with api_client(settings) as client:
        run = client.read_flow_run(match.group(1))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    assert run.state is not None
    assert run.state.is_completed()
    assert run.work_pool_name == "medianest-process"
    assert {"dora-medianest-production", "dora-trend-medianest-production"} <= {a.key for a in artifacts}


def test_a_failed_run_gives_ci_a_non_zero_exit(worker: str, settings: StackSettings) -> None:
    done = prefect_cli(
        [
            "deployment",
            "run",
            "pitr-restore/on-demand",
            "--param",
            "backup_id=does-not-exist",
            "--watch",
            "--watch-timeout",
            "300",
        ],
        stack_env(settings),
    )
    assert done.returncode != 0
    assert "Failed" in done.stdout


def test_the_deployments_ci_calls_build_the_commit_they_are_handed_on_a_worker(
    worker: str, settings: StackSettings, tmp_path: Path
) -> None:
    """What the workflows run, as they run it: `build-and-publish/main` and `feature-ci/pull-request` with a
    repository URL and a commit SHA (the app is checked out nowhere: the worker fetches it), then the teardown."""
    import json

    import httpx

    from medianest_delivery.rollout.previews import plan_for, preview_name
    from tests.helpers import served_app_repository

    bare, work = served_app_repository(tmp_path)
    branch = f"feature/ci-{uuid.uuid4().hex[:5]}"
    for argv in (["checkout", "-q", "-b", branch], ["push", "-q", "origin", branch]):
        subprocess.run(["git", "-C", str(work), *argv], check=True, capture_output=True)
    sha = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    repository = f"file://{bare}"
    environment = preview_name(branch)
    env = stack_env(settings)

    def run(deployment: str, params: dict[str, Any]) -> Any:
        argv = ["deployment", "run", deployment, "--params", json.dumps(params), "--watch", "--watch-timeout", "900"]
        done = prefect_cli(argv, env, timeout=1000)
        assert done.returncode == 0, done.stdout + done.stderr
        match = re.search(r"UUID: ([0-9a-f-]{36})", done.stdout)
        assert match, done.stdout
        with api_client(settings) as client:
            return client.read_flow_run(match.group(1))

    commit = {"repository": repository, "git_ref": sha.stdout.strip()}
    built = run("build-and-publish/main", {**commit, "triggered_by_ref": f"refs/heads/{branch}"})
    assert built.state.is_completed()
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with api_client(settings) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[built.id])))
    # The workflow's branch is recorded as the release's ref, once its commit was proven to be on it.
    confirmed = [t for t in task_runs if t.name == f"source: refs/heads/{branch} contains {commit['git_ref'][:12]}"]
    assert [t.state.is_completed() for t in confirmed if t.state] == [True], [t.name for t in task_runs]
    try:
        preview = run("feature-ci/pull-request", {"branch": branch, **commit})
        assert preview.state.is_completed()
        page = httpx.get(plan_for(environment, settings.routers_dir).router_url(1), timeout=5)
        assert page.status_code == 200
        assert page.headers["X-MediaNest-Version"].endswith(environment.removeprefix("preview-"))
    finally:
        run("feature-ci/pull-request", {"branch": branch, "repository": repository, "teardown": True})
    assert not (settings.routers_dir / environment).exists()
