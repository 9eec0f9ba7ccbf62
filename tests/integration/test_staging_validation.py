"""Stage 3 (`validate-in-staging`) on a staging environment on the real Swarm, and each way it stops a release.

Every stop must happen before production: the production environment here is a preview that must end the
test with no router, no replica and no history. The reason is in the failed run's state and in the history
(a `failed` event of the staging environment).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from blocks.runtime import EnvironmentTarget
from flows.build_and_publish import build_and_publish
from flows.deliver import deliver, validate_in_staging
from medianest_delivery.rollout.history import ReleaseHistory
from medianest_delivery.rollout.swarm import SwarmRuntime
from medianest_delivery.settings import StackSettings
from tests.helpers import SAMPLE_APP, served_app_repository
from tests.integration.test_deliver import tear_down

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def staging(local_stack: StackSettings, releases: dict[str, Path]) -> Iterator[str]:
    """A staging environment of its own, on the Swarm (as the real staging by default)."""
    from medianest_delivery.localstack.stack import stack_up

    stack_up(local_stack, {"prometheus", "swarm"})
    name = f"preview-stg{uuid.uuid4().hex[:6]}"
    EnvironmentTarget(runtime="swarm").save(name)
    try:
        yield name
    finally:
        tear_down(name)


@pytest.fixture
def production(local_stack: StackSettings) -> Iterator[str]:
    """The environment the release is for: never reached when staging stops it."""
    name = f"preview-prd{uuid.uuid4().hex[:6]}"
    yield name
    assert not (local_stack.routers_dir / name).exists(), f"stage 3 failed but {name} got a router"
    assert ReleaseHistory(local_stack.history_dsn).events(name) == [], f"stage 3 failed but {name} has history"


def app_copy(tmp_path: Path) -> Path:
    work = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, work, ignore=shutil.ignore_patterns("__pycache__", ".reports", ".coverage"))
    return work


def edit_config(app: Path, edit: Any) -> str:
    path = app / "delivery.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    return str(path)


def deliver_through(staging: str, production: str, manifest: Path | str, **kwargs: Any) -> Any:
    """deliver to ``production`` through ``staging``; returns the final state of the flow run."""
    params: dict[str, Any] = {
        "release_manifest": str(manifest),
        "environment": production,
        "staging_environment": staging,
        "auto_approve": True,
        "canary_steps": [100],
    }
    return deliver(**{**params, **kwargs}, return_state=True)


def stopped_with(state: Any, staging: str, reason: str) -> None:
    """The run failed for ``reason``, and the history's last event for staging says the same."""
    assert state.is_failed(), state
    assert reason in (state.message or ""), state.message
    events = ReleaseHistory(StackSettings().history_dsn).events(staging)
    assert events, f"no history for {staging}"
    last = events[-1]
    assert last.event == "failed"
    assert last.reason.startswith("stage 3 stopped the release: ")
    assert reason in last.reason, last.reason


def test_validate_in_staging_end_to_end_on_the_swarm(staging: str, releases: dict[str, Path]) -> None:
    checks = validate_in_staging(str(releases["1.0.0"]), staging)
    assert checks["smoke backend"] == {"/health": 200, "/ready": 200, "/version": 200, "/api/media": 200}
    assert "no OpenAPI" not in checks["contract backend"]
    assert checks["performance"]["p95_seconds"] > 0
    assert checks["migrations_validated"]
    replicas = SwarmRuntime(lambda: _manager(), "manager").list(staging)
    assert {(r.component, r.version) for r in replicas} == {("backend", "1.0.0"), ("frontend", "1.0.0")}
    assert all(r.running for r in replicas)


def _manager() -> Any:
    import docker

    return docker.DockerClient(base_url=StackSettings().swarm_node_host("manager"))


def test_a_failing_migration_stops_the_release_in_staging(
    staging: str, production: str, releases: dict[str, Path], tmp_path: Path
) -> None:
    app = app_copy(tmp_path)
    (app / "migrations" / "0003_broken.sql").write_text("ALTER TABLE media ADD COLUMN title text;\n")  # exists
    state = deliver_through(staging, production, releases["1.1.0"], app_config=str(app / "delivery.yaml"))
    stopped_with(state, staging, "migration 0003_broken failed")


def test_a_smoke_path_answering_404_stops_the_release_in_staging(
    staging: str, production: str, releases: dict[str, Path], tmp_path: Path
) -> None:
    def smoke_a_missing_path(config: dict[str, Any]) -> None:
        config["components"][0]["smoke"].append("/api/no-such-path")

    app_config = edit_config(app_copy(tmp_path), smoke_a_missing_path)
    state = deliver_through(staging, production, releases["1.1.0"], app_config=app_config)
    stopped_with(state, staging, "'/api/no-such-path': 404")


def test_a_p95_more_than_ten_percent_worse_than_the_previous_release_stops_it(
    staging: str, production: str, releases: dict[str, Path], local_stack: StackSettings
) -> None:
    # The previous release's recorded baseline: 0.1 ms, which no real p95 on this machine comes near.
    ReleaseHistory(local_stack.history_dsn).save_baseline(staging, "medianest", "0.9.0", 0.0001)
    state = deliver_through(staging, production, releases["1.1.0"])
    stopped_with(state, staging, "more than 10% worse than 0.9.0's 0.1 ms")


def retype_titles(node: Any) -> int:
    """Every ``title`` property schema in the document becomes an integer; how many there were."""
    changed = 0
    if isinstance(node, dict):
        properties = node.get("properties")
        if isinstance(properties, dict) and "title" in properties:
            properties["title"] = {"type": "integer"}
            changed += 1
        changed += sum(retype_titles(value) for value in node.values())
    elif isinstance(node, list):
        changed += sum(retype_titles(value) for value in node)
    return changed


def test_a_contract_violation_found_by_schemathesis_stops_the_release(
    staging: str, production: str, tmp_path: Path, prefect_harness: None
) -> None:
    """A commit whose OpenAPI document says media titles are integers: the backend still answers strings."""
    bare, work = served_app_repository(tmp_path)
    openapi_path = work / "backend" / "medianest_backend" / "openapi.json"
    document = json.loads(openapi_path.read_text())
    assert retype_titles(document) > 0, "the sample's OpenAPI document has no title property any more"
    openapi_path.write_text(json.dumps(document, indent=2) + "\n")
    for args in (["commit", "-qam", "titles are integers"], ["push", "-q", "origin", "main"]):
        subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)
    manifest = build_and_publish(
        repository=f"file://{bare}", git_ref="main", version="1.2.0", releases_dir=str(tmp_path / "releases")
    )
    path = tmp_path / "1.2.0.json"
    path.write_text(manifest.to_json())
    state = deliver_through(staging, production, path, repository=f"file://{bare}")
    stopped_with(state, staging, "schemathesis")
