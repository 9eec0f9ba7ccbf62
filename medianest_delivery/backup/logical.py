"""Logical backups of one database: pg_dump in an exported snapshot, and pg_restore.

The row counts and schema fingerprint in the manifest are read in the very
snapshot pg_dump dumps (pg_export_snapshot + --snapshot), so a restore can be
checked against them exactly, even while the application keeps writing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from medianest_delivery.backup.codec import EncodedObject, decode_chunks, encode_to_file, read_chunks
from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.manifest import StoredEntry
from medianest_delivery.backup.repository import BackupRepository
from medianest_delivery.dsn import tool_environment
from medianest_delivery.errors import CommandFailedError, ConfigError, DatabaseUnavailableError
from medianest_delivery.proc import which_or_raise

USER_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""
SCHEMA_PARTS = {
    "columns": """SELECT table_schema, table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
        ORDER BY table_schema, table_name, ordinal_position""",
    "indexes": """SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3""",
    "constraints": """SELECT n.nspname, c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3""",
}


@dataclass(frozen=True)
class DatabaseFacts:
    """What a restore must reproduce: rows per table and a hash of the schema."""

    row_counts: dict[str, int]
    schema_fingerprint: str


@dataclass
class DumpResult:
    database: str
    server_version: str
    wal_lsn: str | None
    timeline: int | None
    facts: DatabaseFacts
    objects: list[EncodedObject]
    dump_format: str
    started_at: dt.datetime
    finished_at: dt.datetime
    tool_versions: dict[str, str] = field(default_factory=dict)


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        where = psycopg.conninfo.conninfo_to_dict(dsn)
        raise DatabaseUnavailableError(
            f"cannot reach PostgreSQL database {where.get('dbname')!r} at "
            f"{where.get('host', 'local socket')}:{where.get('port', 5432)}: {str(exc).strip()}"
        ) from exc


def read_facts(conn: psycopg.Connection[Any]) -> DatabaseFacts:
    counts = {}
    for schema, table in conn.execute(USER_TABLES).fetchall():
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        row = conn.execute(query).fetchone()
        counts[f"{schema}.{table}"] = int(row[0]) if row else 0
    schema = {name: [list(r) for r in conn.execute(query).fetchall()] for name, query in SCHEMA_PARTS.items()}
    fingerprint = hashlib.sha256(json.dumps(schema, sort_keys=True, default=str).encode()).hexdigest()
    return DatabaseFacts(counts, fingerprint)


def database_facts(dsn: str) -> DatabaseFacts:
    with connect(dsn) as conn:
        return read_facts(conn)


def tool_version(tool: str) -> str:
    out = subprocess.run([which_or_raise(tool), "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip()


def _wal_position(conn: psycopg.Connection[Any]) -> tuple[str | None, int | None]:
    lsn_row = conn.execute(
        "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text"
    ).fetchone()
    try:
        with conn.transaction():  # a savepoint: the timeline needs pg_control rights we may lack
            tl_row = conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()
    except psycopg.errors.InsufficientPrivilege:
        tl_row = None
    return (lsn_row[0] if lsn_row else None), (int(tl_row[0]) if tl_row else None)


def dump_database(
    dsn: str, key: EncryptionKey, spool: Path, *, dump_format: str = "custom", jobs: int = 2
) -> DumpResult:
    """pg_dump → zstd → AES-256-GCM into `spool`, facts read in the same snapshot."""
    if dump_format not in ("custom", "directory"):
        raise ConfigError(f"dump format {dump_format!r} is not 'custom' or 'directory'")
    pg_dump = which_or_raise("pg_dump", "Install postgresql-client.")
    started = dt.datetime.now(dt.UTC)
    with connect(dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.transaction():
            snapshot_row = conn.execute("SELECT pg_export_snapshot(), current_database(), version()").fetchone()
            assert snapshot_row is not None
            snapshot, database, version = snapshot_row
            lsn, timeline = _wal_position(conn)
            target, env = tool_environment(dsn)  # the password goes by environment: never on pg_dump's command line
            base = [pg_dump, "--no-sync", "--compress=0", f"--snapshot={snapshot}", "--dbname", target]
            if dump_format == "custom":
                objects, facts = _dump_custom(base, env, conn, key, spool)
            else:
                objects, facts = _dump_directory(base, env, conn, key, spool, jobs)
    return DumpResult(
        database=str(database),
        server_version=str(version),
        wal_lsn=lsn,
        timeline=timeline,
        facts=facts,
        objects=objects,
        dump_format=dump_format,
        started_at=started,
        finished_at=dt.datetime.now(dt.UTC),
        tool_versions={
            "pg_dump": tool_version("pg_dump"),
            "zstd": _zstd_version(),
            "cipher": "AES-256-GCM STREAM 1MiB",
        },
    )


def _zstd_version() -> str:
    import zstandard

    return f"python-zstandard {zstandard.__version__} (libzstd {zstandard.ZSTD_VERSION})"


def _dump_custom(
    base: list[str], env: dict[str, str], conn: psycopg.Connection[Any], key: EncryptionKey, spool: Path
) -> tuple[list[EncodedObject], DatabaseFacts]:
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([*base, "--format=custom"], stdout=subprocess.PIPE, stderr=errors, env=env)
        assert proc.stdout is not None
        stdout = proc.stdout
        result: dict[str, Any] = {}

        def encode() -> None:
            try:
                result["object"] = encode_to_file(read_chunks(stdout), key, spool / "dump.zst.enc", threads=2)
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                result["error"] = exc

        encoder = threading.Thread(target=encode, name="pg_dump-encoder")
        encoder.start()
        try:
            facts = read_facts(conn)  # same snapshot as the dump, while it streams
        finally:
            encoder.join()
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            errors.seek(0)
            raise CommandFailedError([*base[:1], "--format=custom"], code, errors.read().decode(errors="replace"))
    if "error" in result:
        raise result["error"]
    return [result["object"]], facts


def _dump_directory(
    base: list[str], env: dict[str, str], conn: psycopg.Connection[Any], key: EncryptionKey, spool: Path, jobs: int
) -> tuple[list[EncodedObject], DatabaseFacts]:
    with tempfile.TemporaryDirectory(dir=spool.parent if spool.parent.exists() else None) as raw_dir:
        target = Path(raw_dir) / "dump"
        proc = subprocess.Popen(
            [*base, "--format=directory", f"--jobs={jobs}", "--file", str(target)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        facts = read_facts(conn)
        output = proc.communicate()[0].decode(errors="replace")
        if proc.returncode != 0:
            raise CommandFailedError([*base[:1], "--format=directory"], proc.returncode, output)
        objects = []
        for path in sorted(target.iterdir()):
            with path.open("rb") as stream:
                objects.append(encode_to_file(read_chunks(stream), key, spool / "dump" / f"{path.name}.zst.enc"))
    return objects, facts


def _decoded(repository: BackupRepository, entry: StoredEntry, key: EncryptionKey) -> Iterator[bytes]:
    return decode_chunks(repository.get_chunks(entry.key), key, entry.key, entry.sha256)


def restore_logical(
    repository: BackupRepository,
    objects: list[StoredEntry],
    dump_format: str,
    key: EncryptionKey,
    target_dsn: str,
    jobs: int = 2,
) -> None:
    """Stream a custom dump into pg_restore, or fetch a directory dump and restore it with `jobs`."""
    pg_restore = which_or_raise("pg_restore", "Install postgresql-client.")
    target, env = tool_environment(target_dsn)
    argv = [pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "--dbname", target]
    if dump_format == "custom":
        (entry,) = objects
        with tempfile.TemporaryFile() as output:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=output, stderr=output, env=env)
            assert proc.stdin is not None
            try:
                for chunk in _decoded(repository, entry, key):
                    proc.stdin.write(chunk)
                proc.stdin.close()
            except BrokenPipeError:
                pass  # pg_restore stopped early: its exit code and output say why
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            if proc.wait() != 0:
                output.seek(0)
                raise CommandFailedError(argv[:2], proc.returncode, output.read().decode(errors="replace"))
        return
    with tempfile.TemporaryDirectory() as raw_dir:
        for entry in objects:
            with (Path(raw_dir) / Path(entry.name).name).open("wb") as out:
                for chunk in _decoded(repository, entry, key):
                    out.write(chunk)
        completed = subprocess.run(
            [*argv, f"--jobs={jobs}", "--format=directory", raw_dir],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        if completed.returncode != 0:
            raise CommandFailedError(argv[:2], completed.returncode, completed.stdout + completed.stderr)
