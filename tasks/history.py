"""Release-history lookups that flows act on (rollback)."""

from __future__ import annotations

from typing import Any

from prefect import task

from blocks.delivery import ReleaseHistoryDatabase
from medianest_delivery.errors import ConfigError


@task(name="find-release", task_run_name="history: find {version} in {environment}")
def find_release(history: ReleaseHistoryDatabase, environment: str, app: str, version: str | None) -> dict[str, Any]:
    """The named release, or the one promoted before the current one."""
    store = history.get_client()
    if version:
        manifest = store.release_by_version(environment, app, version)
        if manifest is None:
            raise ConfigError(f"{app} {version} was never promoted in {environment}")
        return manifest
    promoted = [e for e in store.events(environment, app) if e.event == "promoted"]
    current = promoted[-1].version if promoted else None
    earlier = [e for e in promoted if e.version != current]
    if not earlier or earlier[-1].manifest is None:
        raise ConfigError(f"no earlier promoted release of {app} in {environment} to roll back to")
    return earlier[-1].manifest
