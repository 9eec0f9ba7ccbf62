"""Prefect automations on the flows' events: who gets told when a release rolls back or a backup fails.

`AUTOMATIONS` is the definition (pure data); `apply_automations` creates or replaces
them on the server in PREFECT_API_URL, sending through a notification block.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, cast


@dataclass(frozen=True)
class AutomationSpec:
    name: str
    event: str
    subject: str
    body: str


# Jinja templates: Prefect fills {{ event }} when the action runs.
AUTOMATIONS = [
    AutomationSpec(
        "medianest: release rolled back",
        "medianest.release.rolled-back",
        "MediaNest rollback: {{ event.resource['prefect.resource.name'] }}",
        "Release {{ event.resource['medianest.version'] }} was rolled back automatically: "
        "{{ event.payload.reason }} (component {{ event.payload.component }}).",
    ),
    AutomationSpec(
        "medianest: backup validation failed",
        "medianest.backup.validation-failed",
        "MediaNest backup validation FAILED: {{ event.resource['prefect.resource.name'] }}",
        "Backup {{ event.resource['medianest.backup-id'] }} did not restore cleanly: {{ event.payload.problems }}",
    ),
    AutomationSpec(
        "medianest: backup failed",
        "medianest.backup.failed",
        "MediaNest backup FAILED: {{ event.resource['prefect.resource.name'] }}",
        "The nightly backup failed: {{ event.payload.error }}",
    ),
    AutomationSpec(
        "medianest: DR drill failed",
        "medianest.dr-drill.failed",
        "MediaNest DR drill FAILED: {{ event.resource['prefect.resource.name'] }}",
        "RTO {{ event.payload.rto_seconds }} s, RPO {{ event.payload.rpo_seconds }} s; "
        "problems: {{ event.payload.problems }}",
    ),
]


def save_webhook_block(name: str, url: str) -> Any:
    """A Prefect CustomWebhookNotificationBlock posting {subject, body} as JSON to `url`."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    block = CustomWebhookNotificationBlock(
        name="medianest",
        url=url,
        method="POST",
        json_data={"subject": "{{subject}}", "body": "{{body}}"},
        allow_private_urls=url.startswith(("http://127.", "http://localhost", "http://[::1]")),
    )
    block.save(name, overwrite=True)
    return block


def apply_automations(notification_block: str) -> list[str]:
    """Create (or replace, by name) every automation, each sending through `notification_block`."""
    from prefect.automations import Automation
    from prefect.blocks.core import Block
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    # Block.load and Automation.read/create are sync-compatible: in sync code they return values.
    # "<block type slug>/<name>" for any notification block; a bare name is our webhook block.
    ref = notification_block if "/" in notification_block else f"custom-webhook/{notification_block}"
    block = cast(Any, Block.load(ref))
    block_id = block._block_document_id
    created = []
    for spec in AUTOMATIONS:
        with contextlib.suppress(ValueError):  # ValueError: not there yet
            cast(Any, Automation.read(name=spec.name)).delete()
        automation = cast(Any, Automation)(
            name=spec.name,
            description=f"Notify when {spec.event} is emitted (medianest-delivery automations apply).",
            trigger=EventTrigger(expect={spec.event}, posture=Posture.Reactive, threshold=1),
            actions=[SendNotification(block_document_id=block_id, subject=spec.subject, body=spec.body)],
        ).create()
        created.append(str(automation.name))
    return created
