"""`medianest-delivery automations ...`: notifications on the flows' events."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from medianest_delivery.localstack.prefect_api import configured_or_stack_prefect
from medianest_delivery.settings import StackSettings

automations_app = typer.Typer(help="Prefect automations on release and backup events.", no_args_is_help=True)
console = Console()


@automations_app.command("apply")
def apply_command(
    webhook_url: Annotated[
        str | None, typer.Option(help="POST {subject, body} JSON here (saved as a webhook notification block).")
    ] = None,
    block: Annotated[
        str, typer.Option(help="Notification block: <type slug>/<name>, or a name of our webhook block.")
    ] = ("medianest-notifications"),
) -> None:
    """Create or replace the automations: notify on rollback, failed backup, failed validation, failed drill."""
    from medianest_delivery.console.automations import apply_automations, save_webhook_block

    with configured_or_stack_prefect(StackSettings()):
        if webhook_url:
            save_webhook_block(block, webhook_url)
        for name in apply_automations(block):
            console.print(f"automation ready: {name} → block {block!r}")
