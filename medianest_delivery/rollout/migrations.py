"""SQL migrations: which are pending, which cannot be undone, applying them, validating on a scratch copy."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from medianest_delivery.dsn import tool_environment
from medianest_delivery.errors import CommandFailedError, ConfigError

INCOMPATIBLE_MARKER = "-- medianest: backward-incompatible"


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    backward_compatible: bool

    @property
    def text(self) -> str:
        return self.path.read_text()


def discover_migrations(directory: Path) -> list[Migration]:
    """``NNNN_name.sql`` files in order; a file carrying the marker line cannot be rolled back."""
    if not directory.is_dir():
        raise ConfigError(f"migrations directory {directory} does not exist")
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        migrations.append(Migration(path.stem, path, INCOMPATIBLE_MARKER not in text))
    return migrations


# The ledger of applied migrations: written by our role only (app roles get no privilege on it).
MIGRATIONS_TABLE = "schema_migrations"


def pending(migrations: list[Migration], applied: set[str]) -> list[Migration]:
    return [m for m in migrations if m.version not in applied]


def create_database(dsn: str) -> None:
    """Create the database if missing; only roles granted CONNECT (and superusers) may connect to it."""
    name = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # created concurrently by another task
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        # PostgreSQL lets every role connect to every database by default; app roles get CONNECT on theirs only.
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))


def drop_database(dsn: str) -> None:
    name = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def applied_versions(dsn: str) -> set[str]:
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        ledger = sql.Identifier(MIGRATIONS_TABLE)
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now())"
            ).format(ledger)
        )
        return {row[0] for row in conn.execute(sql.SQL("SELECT version FROM {}").format(ledger)).fetchall()}


def apply_migrations(dsn: str, migrations: list[Migration]) -> list[str]:
    """Apply each pending migration in its own transaction; returns the versions applied."""
    done = []
    for migration in pending(migrations, applied_versions(dsn)):
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            try:
                conn.execute(migration.text.encode())
            except psycopg.Error as exc:
                raise ConfigError(f"migration {migration.version} failed: {exc}") from exc
            conn.execute(
                sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(sql.Identifier(MIGRATIONS_TABLE)),
                (migration.version,),
            )
        done.append(migration.version)
    return done


def run_checks(dsn: str, checks: list[str]) -> None:
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        for check in checks:
            try:
                conn.execute(check.encode())
            except psycopg.Error as exc:
                raise ConfigError(f"database check {check!r} failed: {exc}") from exc


def failed_checks(dsn: str, checks: list[str]) -> list[str]:
    """The app's sanity queries as problems to report (empty when they all run), for restore verdicts."""
    try:
        run_checks(dsn, checks)
    except ConfigError as exc:
        return [f"app check failed: {exc}"]
    return []


def copy_database(source_dsn: str, target_dsn: str) -> None:
    """pg_dump piped into pg_restore (two processes, no shell)."""
    source, source_env = tool_environment(source_dsn)  # passwords by environment, never in `ps`
    target, target_env = tool_environment(target_dsn)
    dump = subprocess.Popen(
        ["pg_dump", "--format=custom", "--dbname", source],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=source_env,
    )
    restore = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "--dbname", target],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        check=False,
        env=target_env,
    )
    assert dump.stdout is not None
    dump.stdout.close()
    dump_err = dump.stderr.read().decode() if dump.stderr else ""
    if dump.wait() != 0:
        raise CommandFailedError(["pg_dump", "--format=custom"], dump.returncode, dump_err)
    if restore.returncode != 0:
        raise CommandFailedError(["pg_restore", "--no-owner"], restore.returncode, restore.stdout + restore.stderr)


def validate_on_scratch_copy(source_dsn: str, migrations: list[Migration], checks: list[str]) -> list[str]:
    """Copy ``source_dsn`` to a scratch database, apply pending migrations, run the checks, drop it."""
    scratch = psycopg.conninfo.make_conninfo(source_dsn, dbname=f"scratch_{uuid.uuid4().hex[:12]}")
    create_database(scratch)
    try:
        copy_database(source_dsn, scratch)
        applied = apply_migrations(scratch, migrations)
        run_checks(scratch, checks)
        return applied
    finally:
        drop_database(scratch)
