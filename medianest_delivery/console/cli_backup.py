"""`medianest-delivery backup ...`: the key, archive_command settings, and what a repository holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from blocks.backup import DEFAULT_KEY_SECRET, ensure_backup_key
from medianest_delivery.localstack.prefect_api import configured_or_stack_prefect
from medianest_delivery.settings import StackSettings

backup_app = typer.Typer(
    help="Backups: encryption key, WAL archiving settings, repository contents.", no_args_is_help=True
)
console = Console()


@backup_app.command("init-key")
def init_key(secret: Annotated[str, typer.Option(help="Prefect Secret block name.")] = DEFAULT_KEY_SECRET) -> None:
    """Create the AES-256 backup key as a Prefect Secret block (kept if it exists) and print its id."""
    settings = StackSettings()
    with configured_or_stack_prefect(settings):
        key = ensure_backup_key(settings, secret)
    console.print(f"backup key {secret!r}: key id {key.key_id}; escrow copy {settings.backup_key_file} (0600)")
    console.print("Keep a copy of that key outside this machine: without it no backup can be restored.")


@backup_app.command("archive-settings")
def archive_settings(
    stanza: Annotated[str, typer.Option(help="Repository stanza of the cluster.")],
    config_dir: Annotated[Path, typer.Option(help="Where the archiver's config and key file go (postgres-readable).")],
    repository: Annotated[str, typer.Option(help="Directory repository path.")] = "",
    secret: Annotated[str, typer.Option(help="Prefect Secret block holding the key.")] = DEFAULT_KEY_SECRET,
) -> None:
    """Write the archiver config for a cluster and print the postgresql.conf lines that enable archiving."""
    from medianest_delivery.backup.physical import archiving_settings, write_archiver_config
    from medianest_delivery.backup.repospec import RepositorySpec

    settings = StackSettings()
    with configured_or_stack_prefect(settings):
        key = ensure_backup_key(settings, secret)
    spec = RepositorySpec(kind="directory", path=repository or str(settings.backups_dir))
    config = write_archiver_config(config_dir, stanza, spec, key)
    for name, value in archiving_settings(config).items():
        typer.echo(f"{name} = {value!r}" if isinstance(value, str) else f"{name} = {value}")


@backup_app.command("list")
def list_backups(
    stanza: Annotated[str, typer.Argument(help="Repository stanza, e.g. medianest-production.")],
    repository: Annotated[str, typer.Option(help="Directory repository path.")] = "",
) -> None:
    """Complete backups in a directory repository, with their validation verdicts."""
    from medianest_delivery.backup.catalog import list_catalog
    from medianest_delivery.backup.repository import DirectoryRepository

    repo = DirectoryRepository(Path(repository or StackSettings().backups_dir))
    table = Table(title=f"{stanza} in {repo.location}")
    for column in ("backup", "kind", "finished", "stored", "validation"):
        table.add_column(column)
    for entry in list_catalog(repo, stanza):
        m = entry.manifest
        verdict = entry.validation.verdict.value if entry.validation else "not validated"
        table.add_row(
            m.backup_id, m.kind.value, m.finished_at.isoformat(timespec="seconds"), f"{m.size / 1e6:.1f} MB", verdict
        )
    console.print(table)
