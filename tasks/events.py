"""Prefect events the release flows emit; automations (medianest-delivery automations) match on them."""

from __future__ import annotations

from typing import Any

RELEASE_PROMOTED = "medianest.release.promoted"
RELEASE_ROLLED_BACK = "medianest.release.rolled-back"
RELEASE_FROZEN = "medianest.release.frozen"


def emit_release_event(event: str, environment: str, app: str, version: str, payload: dict[str, Any]) -> None:
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"medianest.release.{app}.{environment}",
            "prefect.resource.name": f"{app} in {environment}",
            "medianest.version": version,
            "medianest.environment": environment,
        },
        payload=payload,
    )
