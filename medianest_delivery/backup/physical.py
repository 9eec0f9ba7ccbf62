"""Continuous archiving and point-in-time recovery: archiver setup, pg_basebackup, PITR restore.

The cluster's `archive_command` and a restored cluster's `restore_command` are
shell command lines by PostgreSQL's design; they are assembled here from an
argument list with shlex.quote, and run our archiver (walarchive.py).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from medianest_delivery.backup.archiver_install import archiver_argv, check_archiver_config
from medianest_delivery.backup.codec import EncodedObject, decode_chunks, encode_to_file, read_chunks
from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.manifest import StoredEntry
from medianest_delivery.backup.pgcluster import LocalCluster, give_to_cluster_user, pg_tool
from medianest_delivery.backup.repository import BackupRepository
from medianest_delivery.backup.repospec import RepositorySpec
from medianest_delivery.backup.walarchive import ArchiverConfig, find_segment, wal_prefix
from medianest_delivery.dsn import tool_environment
from medianest_delivery.errors import CommandFailedError, ConfigError, StackError, VerificationError
from medianest_delivery.settings import StackSettings

START_POINT = re.compile(r"write-ahead log start point: ([0-9A-F]+/[0-9A-F]+) on timeline (\d+)")
END_POINT = re.compile(r"write-ahead log end point: ([0-9A-F]+/[0-9A-F]+)")
STOP_LINE = re.compile(r"recovery stopping (before|after) .*")
LAST_TX = re.compile(r"last completed transaction was at log time (.+)$", re.MULTILINE)


def write_archiver_config(
    directory: Path, stanza: str, spec: RepositorySpec, key: EncryptionKey, *, name: str = "archiver"
) -> Path:
    """Key file and archiver config (both 0600, owned by the cluster user) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key_file = directory / f"{name}.key"
    key_file.write_text(key.encoded())
    key_file.chmod(0o600)
    config_path = directory / f"{name}.json"
    ArchiverConfig(stanza, spec, key_file, directory / f"{name}-spool").write(config_path)
    if spec.kind == "directory":  # the cluster user writes WAL there; our own writes go beside it
        wal_dir = Path(spec.path) / wal_prefix(stanza)
        wal_dir.mkdir(parents=True, exist_ok=True)
        give_to_cluster_user(wal_dir)
        for parent in (wal_dir.parent, Path(spec.path)):
            parent.chmod(0o755)
    give_to_cluster_user(directory)
    return config_path


def command_line(argv: list[str]) -> str:
    return " ".join(shlex.quote(arg) for arg in argv)


def archiving_settings(
    config_path: Path, archive_timeout_s: int = 60, tools_dir: Path | None = None
) -> dict[str, str | int]:
    """postgresql.conf settings that archive every WAL segment through our installed archiver.

    The archiver is installed (or reused) first, and run once as the cluster user
    against `config_path`: a setting that PostgreSQL would fail on is never returned.
    """
    argv = archiver_argv(tools_dir or StackSettings().tools_dir)
    check_archiver_config(argv, config_path)
    push = command_line([*argv, "push", "--config", str(config_path)])
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"{push} %p",
        "archive_timeout": archive_timeout_s,  # bounds RPO on a quiet database
    }


@dataclass
class BaseBackupResult:
    start_lsn: str
    end_lsn: str
    timeline: int
    wal_segment_size: int
    server_version: str
    encoded: EncodedObject
    started_at: dt.datetime
    finished_at: dt.datetime


def take_base_backup(dsn: str, key: EncryptionKey, spool: Path) -> BaseBackupResult:
    """pg_basebackup as one tar on stdout (with the WAL it needs) → zstd → AES-256-GCM."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        row = conn.execute("SELECT current_setting('wal_segment_size'), current_setting('server_version')").fetchone()
        assert row is not None
        segment_size = _size_setting(str(row[0]))
        version = str(row[1])
    argv = [
        pg_tool("pg_basebackup"),
        "--host",
        str(params.get("host", "127.0.0.1")),
        "--port",
        str(params.get("port", 5432)),
        "--username",
        str(params.get("user", "postgres")),
        "--pgdata",
        "-",
        "--format=tar",
        "--wal-method=fetch",  # self-contained: consistent even before the archive catches up
        "--checkpoint=fast",
        "--verbose",
    ]
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryFile() as errors:
        # The password (if any) by environment, as libpq reads it: never on the command line.
        env = tool_environment(dsn)[1]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors, env=env)
        assert proc.stdout is not None
        encoded = encode_to_file(read_chunks(proc.stdout), key, spool / "base.tar.zst.enc", threads=2)
        code = proc.wait()
        errors.seek(0)
        log = errors.read().decode(errors="replace")
    if code != 0:
        raise CommandFailedError(argv, code, log)
    start, end = START_POINT.search(log), END_POINT.search(log)
    if not start or not end:
        raise VerificationError(f"pg_basebackup did not report its WAL start and end points:\n{log}")
    return BaseBackupResult(
        start.group(1),
        end.group(1),
        int(start.group(2)),
        segment_size,
        version,
        encoded,
        started,
        dt.datetime.now(dt.UTC),
    )


def _size_setting(value: str) -> int:
    units = {"kB": 1024, "MB": 1024**2, "GB": 1024**3}
    for unit, factor in units.items():
        if value.endswith(unit):
            return int(value[: -len(unit)]) * factor
    return int(value)


def switch_wal(dsn: str) -> str:
    """Close the current segment so it is archived now; returns its name."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
    assert row is not None
    return str(row[0])


def wait_for_segment(repository: BackupRepository, stanza: str, wal_name: str, timeout: float = 120) -> float:
    """Seconds until `wal_name` is in the repository; raises naming it when it never arrives."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if find_segment(repository, stanza, wal_name):
            return time.monotonic() - started
        time.sleep(0.25)
    raise VerificationError(
        f"WAL segment {wal_name} did not reach {repository.location} within {timeout:.0f}s: "
        "check archive_command and the server log (pg_stat_archiver.last_failed_wal)"
    )


@dataclass(frozen=True)
class RecoveryTarget:
    """Where replay stops: a time, an LSN, or the end of the archive ('latest')."""

    time: dt.datetime | None = None
    lsn: str | None = None

    def __post_init__(self) -> None:
        if self.time is not None and self.lsn is not None:
            raise ConfigError("give a recovery target time or an LSN, not both")
        if self.time is not None and self.time.tzinfo is None:
            raise ConfigError("recovery target time needs a time zone (e.g. 2026-11-26T02:00:00+00:00)")

    def settings(self) -> dict[str, str | int]:
        if self.time is not None:
            return {"recovery_target_time": self.time.isoformat(), "recovery_target_action": "promote"}
        if self.lsn is not None:
            return {"recovery_target_lsn": self.lsn, "recovery_target_action": "promote"}
        return {}

    def describe(self) -> str:
        return f"time {self.time.isoformat()}" if self.time else f"LSN {self.lsn}" if self.lsn else "end of archive"


@dataclass
class RecoveryResult:
    port: int
    data_dir: Path
    replayed_lsn: str
    stop_line: str | None
    last_transaction_at: dt.datetime | None
    seconds: float


def _extract(chunks: Iterator[bytes], target: Path) -> None:
    reader = _ChunkReader(chunks)
    with tarfile.open(fileobj=reader, mode="r|") as archive:  # type: ignore[call-overload]
        archive.extractall(target, filter="data")


class _ChunkReader:
    """A read()-able view of an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                break
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


def restore_base_backup(
    repository: BackupRepository, entry: StoredEntry, key: EncryptionKey, cluster: LocalCluster
) -> None:
    """Decrypt and unpack the base backup into the cluster's (new) data directory."""
    if cluster.data_dir.exists() and any(cluster.data_dir.iterdir()):
        raise ConfigError(f"restore target {cluster.data_dir} is not empty; refusing to overwrite it")
    cluster.data_dir.mkdir(parents=True, exist_ok=True)
    _extract(decode_chunks(repository.get_chunks(entry.key), key, entry.key, entry.sha256), cluster.data_dir)
    for stale in ("postmaster.pid", "postmaster.opts", "standby.signal"):
        (cluster.data_dir / stale).unlink(missing_ok=True)
    for required, text in (
        ("postgresql.conf", "# written by medianest-delivery: the source kept its config outside PGDATA\n"),
        (
            "pg_hba.conf",
            "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n",
        ),
        ("pg_ident.conf", ""),
    ):
        path = cluster.data_dir / required
        if not path.exists():
            path.write_text(text)
    (cluster.data_dir / "pg_wal").mkdir(exist_ok=True)
    cluster.data_dir.chmod(0o700)
    give_to_cluster_user(cluster.data_dir)


def recover(
    cluster: LocalCluster,
    archiver_config: Path,
    target: RecoveryTarget,
    timeout: float = 1800,
    tools_dir: Path | None = None,
) -> RecoveryResult:
    """Replay archived WAL to `target`, promote, and prove where replay stopped."""
    fetch = command_line(
        [*archiver_argv(tools_dir or StackSettings().tools_dir), "fetch", "--config", str(archiver_config)]
    )
    cluster.configure(
        {
            "archive_mode": "off",  # a drill must never write into the production archive
            "restore_command": f"{fetch} %f %p",
            "recovery_target_timeline": "current",
            **target.settings(),
        }
    )
    signal = cluster.data_dir / "recovery.signal"
    signal.touch()
    give_to_cluster_user(signal)
    started = time.monotonic()
    try:
        cluster.start(timeout=timeout)
    except StackError as exc:
        _raise_if_short(cluster, target, exc)
        raise
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=5) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text").fetchone()
        except psycopg.OperationalError as exc:  # replay can end in FATAL after the server accepted connections
            _raise_if_short(cluster, target, exc)
            tail = "\n".join(cluster.log_file.read_text(errors="replace").splitlines()[-15:])
            raise StackError(f"restored cluster on port {cluster.port} stopped during recovery:\n{tail}") from exc
        assert row is not None
        if not row[0]:
            break
        if time.monotonic() > deadline:
            raise VerificationError(f"cluster on port {cluster.port} still in recovery after {timeout:.0f}s")
        time.sleep(0.2)
    seconds = time.monotonic() - started
    log = cluster.log_file.read_text(errors="replace")
    stop = STOP_LINE.search(log)
    last = LAST_TX.findall(log)
    return RecoveryResult(
        port=cluster.port,
        data_dir=cluster.data_dir,
        replayed_lsn=str(row[1]),
        stop_line=stop.group(0) if stop else None,
        last_transaction_at=_pg_time(last[-1]) if last else None,
        seconds=seconds,
    )


def _raise_if_short(cluster: LocalCluster, target: RecoveryTarget, cause: Exception) -> None:
    log = cluster.log_file.read_text(errors="replace") if cluster.log_file.exists() else ""
    if "recovery ended before configured recovery target was reached" in log:
        raise VerificationError(
            f"the archive ends before the recovery target ({target.describe()}): the WAL that reaches it "
            "is not in the repository (not yet archived, or missing)"
        ) from cause


def _pg_time(text: str) -> dt.datetime | None:
    """PostgreSQL's log timestamps ('2026-11-26 10:10:12.345678+00') as aware datetimes."""
    try:
        return dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def query_one(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    """First column of the first row (operator-supplied proof queries are SQL by design)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(query.encode(), params or None).fetchone()
    return row[0] if row else None
