"""`medianest-delivery`: the local stack and the demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from medianest_delivery.appconfig import DEFAULT_APP_CONFIG as APP_CONFIG
from medianest_delivery.console.cli_backup import backup_app
from medianest_delivery.console.cli_ops import automations_app
from medianest_delivery.errors import DeliveryError
from medianest_delivery.localstack.prefect_api import stack_prefect_settings
from medianest_delivery.localstack.stack import (
    export_environment,
    shell_exports,
    stack_down,
    stack_status,
    stack_up,
)
from medianest_delivery.settings import StackSettings

app = typer.Typer(help="MediaNest delivery pipelines on Prefect 3.", no_args_is_help=True)
stack_app = typer.Typer(
    help="The embedded local stack (dockerd, registry, Prefect server, base image).", no_args_is_help=True
)
app.add_typer(stack_app, name="stack")
app.add_typer(backup_app, name="backup")
app.add_typer(automations_app, name="automations")
# Digests are long: when not on a terminal (CI logs, pipes), print wide instead of folding.
console = Console(width=None if sys.stdout.isatty() else 200)

DEFAULT_APP_CONFIG = Path(APP_CONFIG)


def _print_status(settings: StackSettings) -> bool:
    table = Table(title=f"local stack (state: {settings.state_dir})")
    for column in ("component", "running", "where", "started by us", "detail"):
        table.add_column(column)
    all_up = True
    for status in stack_status(settings):
        all_up &= status.running
        table.add_row(
            status.name,
            "[green]yes[/]" if status.running else "[red]no[/]",
            status.where,
            "yes" if status.started_by_us else "no",
            status.detail + (f"\n[yellow]stale: {status.stale}[/]" if status.stale else ""),
        )
    console.print(table)
    for status in stack_status(settings):
        if status.stale:
            action = "`stack up` restarts it" if status.started_by_us else "started elsewhere: restart it there"
            console.print(f"[yellow]{status.name} is {status.stale}; {action}[/]")
    return all_up


def _bring_stack_up(settings: StackSettings, only: set[str] | None = None) -> None:
    """`stack up` with a line per component and how long it took (first runs build images)."""
    timings: list[tuple[str, float]] = []

    def report(name: str, seconds: float) -> None:
        timings.append((name, seconds))
        console.print(f"  {name}: ready after {seconds:.1f} s")

    console.print("Bringing the local stack up (the first run builds the base image and the WAL archiver)")
    try:
        stack_up(settings, only, report=report)
    except DeliveryError as exc:
        console.print(f"[red]stack up failed:[/] {exc}")
        raise typer.Exit(1) from exc
    slow = [f"{name} {seconds:.0f} s" for name, seconds in timings if seconds >= 5]
    console.print(f"stack up took {sum(s for _, s in timings):.1f} s" + (f" ({', '.join(slow)})" if slow else ""))


@stack_app.command("up")
def stack_up_command(
    only: Annotated[list[str] | None, typer.Option(help="Start only these components.")] = None,
) -> None:
    """Start every component that is not already answering (idempotent)."""
    settings = StackSettings()
    _bring_stack_up(settings, set(only) if only else None)
    _print_status(settings)
    for line in shell_exports(settings):
        console.print(line, markup=False, highlight=False)


@stack_app.command("down")
def stack_down_command() -> None:
    """Stop only the processes that `stack up` started; images and data are kept."""
    stopped = stack_down(StackSettings())
    console.print("stopped: " + (", ".join(stopped) if stopped else "nothing (none started by us)"))


@stack_app.command("status")
def stack_status_command() -> None:
    """Show what runs where; exits 1 if a component is not running."""
    if not _print_status(StackSettings()):
        raise typer.Exit(1)


@stack_app.command("env")
def stack_env_command() -> None:
    """Print shell exports that point docker and Prefect clients at the stack."""
    for line in shell_exports(StackSettings()):
        typer.echo(line)


@app.command("build")
def build_command(
    app_config: Annotated[Path, typer.Option(help="The app's delivery.yaml.")] = DEFAULT_APP_CONFIG,
    version: Annotated[str | None, typer.Option(help="Release version (default: from the config).")] = None,
) -> None:
    """Run the build-and-publish flow once against the local stack."""
    settings = StackSettings()
    os.environ.update(export_environment(settings))
    from flows.build_and_publish import build_and_publish
    from medianest_delivery.console.demo import print_release_summary

    try:
        with stack_prefect_settings(settings):  # os.environ above is for child processes; Prefect read its own
            manifest = build_and_publish(app_config=str(app_config), version=version)
    except DeliveryError as exc:
        console.print(f"[red]build-and-publish failed:[/] {exc}")
        raise typer.Exit(1) from exc
    print_release_summary(console, manifest, settings)


@app.command("demo")
def demo_command(
    app_config: Annotated[Path, typer.Option(help="The app's delivery.yaml.")] = DEFAULT_APP_CONFIG,
) -> None:
    """Bring the stack up, run build-and-publish on the sample app, print a summary."""
    settings = StackSettings()
    _bring_stack_up(settings)
    _print_status(settings)
    os.environ.update(export_environment(settings))
    import datetime as dt

    from medianest_delivery.console.demo import run_delivery_demo
    from medianest_delivery.console.demo_ops import run_dora_demo
    from medianest_delivery.console.demo_recovery import run_recovery_demo

    started = dt.datetime.now(dt.UTC)
    try:
        # The runs belong in the stack's UI: Prefect read its settings before os.environ was updated above.
        with stack_prefect_settings(settings):
            run_delivery_demo(console, settings, str(app_config))
            run_recovery_demo(console, settings, str(app_config))
            run_dora_demo(console, settings, started)
    except DeliveryError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"The stack keeps running: Prefect UI at http://127.0.0.1:{settings.prefect_port}")


@app.command("worker")
def worker_command(
    pool: Annotated[str, typer.Option(help="The process work pool to poll.")] = "medianest-process",
    name: Annotated[str | None, typer.Option(help="The worker's name (default: Prefect's).")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many flow runs at once.")] = None,
) -> None:
    """`prefect worker start --type process`, polling every second, whose flow runs start warm.

    One spare interpreter waits with Prefect and the flows already imported; the deployments' command
    (`medianest-flow-run`, set in prefect.yaml) hands each run to it. The shell's Prefect settings apply.
    """
    import tempfile

    from medianest_delivery.console.warm_start import run_worker

    socket_dir = Path(tempfile.mkdtemp(prefix="medianest-worker-"))  # 0700: the runs' environments pass here
    try:
        raise typer.Exit(run_worker(pool, name, limit, socket_dir / "warm.sock"))
    finally:
        (socket_dir / "warm.sock").unlink(missing_ok=True)
        socket_dir.rmdir()


if __name__ == "__main__":
    app()
