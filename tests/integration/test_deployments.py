"""`prefect deploy --all` registers every deployment of prefect.yaml on the stack's Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medianest_delivery.settings import StackSettings
from medianest_delivery.stack import stack_up
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.integration
PREFECT = str(Path(sys.executable).parent / "prefect")

EXPECTED_SCHEDULES = {
    "nightly-backup/nightly": "0 2 * * *",
    "validate-backup/nightly": "0 4 * * *",
    "base-backup/daily": "30 1 * * *",
    "verify-repository/daily": "0 5 * * *",
    "dr-drill/weekly": "0 6 * * 0",
    "preview-cleanup/nightly": "30 3 * * *",
}


@pytest.fixture(scope="module")
def deployed() -> dict[str, object]:
    settings = StackSettings()
    stack_up(settings, {"prefect-server"})
    env = {**os.environ, "PREFECT_API_URL": settings.prefect_api_url, "MEDIANEST_DELIVERY_HOME": str(REPO_ROOT)}
    for argv in (
        [PREFECT, "work-pool", "create", "medianest-process", "--type", "process", "--overwrite"],
        [PREFECT, "--no-prompt", "deploy", "--all"],
    ):
        done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # prefect read its settings at import: point this client at the stack's server explicitly
    with temporary_settings({PREFECT_API_URL: settings.prefect_api_url}), get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in client.read_deployments()}


def test_disaster_recovery_schedules_are_registered_in_utc(deployed: dict[str, object]) -> None:
    for name, cron in EXPECTED_SCHEDULES.items():
        assert name in deployed, f"{name} not registered"
        schedules = deployed[name].schedules  # type: ignore[attr-defined]
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in schedules] == [(cron, "UTC", True)], name


def test_every_deployment_is_on_the_process_pool(deployed: dict[str, object]) -> None:
    assert {"deliver/production", "build-and-publish/main", "pitr-restore/on-demand"} <= set(deployed)
    assert {d.work_pool_name for d in deployed.values()} == {"medianest-process"}  # type: ignore[attr-defined]
