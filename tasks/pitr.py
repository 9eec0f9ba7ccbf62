"""Tasks for continuous archiving and point-in-time recovery (pg_basebackup, WAL, scratch clusters)."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.backup import BackupStorage, load_backup_key
from medianest_delivery.backup.catalog import commit_manifest, list_catalog, load_manifest, store_objects
from medianest_delivery.backup.logical import database_facts
from medianest_delivery.backup.manifest import BackupKind, BackupManifest, new_backup_id
from medianest_delivery.backup.pgcluster import LocalCluster, free_port
from medianest_delivery.backup.physical import (
    RecoveryResult,
    RecoveryTarget,
    query_one,
    recover,
    restore_base_backup,
    switch_wal,
    take_base_backup,
    wait_for_segment,
    write_archiver_config,
)
from medianest_delivery.backup.verdicts import compare_restore
from medianest_delivery.backup.verify import VerifyReport, verify_stanza
from medianest_delivery.backup.walarchive import SUFFIX, split_segment_key, wal_prefix
from medianest_delivery.backup.walchain import expired_segments, segment_of
from medianest_delivery.dsn import redact_dsn
from medianest_delivery.errors import ConfigError, DatabaseUnavailableError, RepositoryError
from medianest_delivery.rollout.migrations import failed_checks
from tasks.backup import REPOSITORY_RETRIES
from tasks.policies import retry_on


@task(
    name="take-base-backup",
    task_run_name="pg_basebackup {stanza}",
    retries=2,
    retry_delay_seconds=[5, 30],
    retry_condition_fn=retry_on(DatabaseUnavailableError, RepositoryError),
    cache_policy=NO_CACHE,
)
def take_and_store_base_backup(
    storage: BackupStorage, stanza: str, cluster_dsn: str, key_secret: str
) -> BackupManifest:
    """pg_basebackup → zstd → AES-256-GCM → repository, then the manifest with its WAL range."""
    key = load_backup_key(key_secret)
    backup_id = new_backup_id(BackupKind.BASE.value, dt.datetime.now(dt.UTC))
    with tempfile.TemporaryDirectory(prefix="basebackup-") as spool:
        try:
            result = take_base_backup(cluster_dsn, key, Path(spool))
        except OSError as exc:
            raise DatabaseUnavailableError(f"base backup of {redact_dsn(cluster_dsn)} failed: {exc}") from exc
        repository = storage.get_client()
        entries = store_objects(repository, stanza, backup_id, [result.encoded], Path(spool))
    manifest = BackupManifest(
        backup_id=backup_id,
        kind=BackupKind.BASE,
        stanza=stanza,
        server_version=result.server_version,
        started_at=result.started_at,
        finished_at=result.finished_at,
        wal_start_lsn=result.start_lsn,
        wal_end_lsn=result.end_lsn,
        timeline=result.timeline,
        wal_segment_size=result.wal_segment_size,
        objects=entries,
        tool_versions={"pg_basebackup": result.server_version},
        key_id=key.key_id,
    )
    commit_manifest(repository, manifest)
    return manifest


@task(
    name="check-archiving", task_run_name="check WAL archiving of {stanza}", cache_policy=NO_CACHE, **REPOSITORY_RETRIES
)
def check_archiving(storage: BackupStorage, stanza: str, cluster_dsn: str, timeout_s: float = 120) -> dict[str, object]:
    """Like `pgbackrest check`: force a WAL switch and wait until that segment is in the repository."""
    segment = switch_wal(cluster_dsn)
    seconds = wait_for_segment(storage.get_client(), stanza, segment, timeout_s)
    get_run_logger().info("WAL %s archived %.2f s after the switch", segment, seconds)
    return {"segment": segment, "seconds": seconds}


@task(name="verify-repository", task_run_name="verify {stanza}", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def verify_repository(storage: BackupStorage, stanza: str, key_secret: str) -> VerifyReport:
    """Like `pgbackrest verify`: every object's size and checksum, every WAL segment, the chain's gaps."""
    return verify_stanza(storage.get_client(), stanza, load_backup_key(key_secret))


@task(name="expire-wal", task_run_name="expire WAL of {stanza}", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def expire_wal(storage: BackupStorage, stanza: str, dry_run: bool) -> list[str]:
    """Delete WAL older than the oldest complete base backup needs (never anything newer)."""
    repository = storage.get_client()
    bases = [e.manifest for e in list_catalog(repository, stanza, BackupKind.BASE.value)]
    if not bases:
        return []
    oldest = bases[0]
    size = oldest.wal_segment_size or 16 * 1024 * 1024
    start = segment_of(oldest.wal_start_lsn or "0/0", oldest.timeline or 1, size)
    objects = {
        split_segment_key(o.key)[0]: o.key
        for o in repository.list_objects(f"{wal_prefix(stanza)}/")
        if o.key.endswith(SUFFIX)
    }
    expired = expired_segments(list(objects), start, size)
    if not dry_run:
        repository.delete([objects[name] for name in expired])
    return expired


def base_backup_for(
    storage: BackupStorage, stanza: str, backup_id: str, target_time: dt.datetime | None
) -> BackupManifest:
    """The named base backup, or the newest one that finished before the target time."""
    repository = storage.get_client()
    if backup_id != "latest":
        return load_manifest(repository, stanza, backup_id)
    candidates = [
        e.manifest
        for e in list_catalog(repository, stanza, BackupKind.BASE.value)
        if target_time is None or e.manifest.finished_at <= target_time
    ]
    if not candidates:
        when = f" finished before {target_time.isoformat()}" if target_time else ""
        raise ConfigError(f"no complete base backup of stanza {stanza!r}{when} in {repository.location}")
    return candidates[-1]


@task(name="restore-point-in-time", task_run_name="PITR {manifest.backup_id} → {target_label}", cache_policy=NO_CACHE)
def restore_point_in_time(
    storage: BackupStorage,
    manifest: BackupManifest,
    key_secret: str,
    target: RecoveryTarget,
    target_label: str,
    clusters_dir: str,
) -> RecoveryResult:
    """Unpack the base backup into a new scratch cluster on a free 127.0.0.1 port and replay WAL to the target."""
    key = load_backup_key(key_secret)
    if key.key_id != manifest.key_id:
        raise ConfigError(
            f"base backup {manifest.backup_id} needs key id {manifest.key_id}; {key_secret!r} is {key.key_id}"
        )
    workdir = Path(clusters_dir) / f"pitr-{uuid.uuid4().hex[:8]}"
    cluster = LocalCluster(workdir / "data", free_port())
    try:
        config = write_archiver_config(workdir / "archiver", manifest.stanza, storage.spec(), key)
        restore_base_backup(storage.get_client(), manifest.objects[0], key, cluster)
        result = recover(cluster, config, target)
    except BaseException:
        cluster.remove()  # a failed restore leaves no cluster, key file or data behind
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    get_run_logger().info(
        "recovered to %s on port %d in %.1f s: %s", result.replayed_lsn, result.port, result.seconds, result.stop_line
    )
    return result


@task(name="remove-scratch-cluster", task_run_name="remove {data_dir}", cache_policy=NO_CACHE)
def remove_scratch_cluster(data_dir: str, port: int) -> None:
    cluster = LocalCluster(Path(data_dir), port)
    cluster.remove()
    shutil.rmtree(Path(data_dir).parent, ignore_errors=True)  # archiver config and key file go too


CREATE_DRILL_TABLE = (
    "CREATE TABLE IF NOT EXISTS medianest_dr_drill "
    "(id bigserial PRIMARY KEY, noted_at timestamptz NOT NULL DEFAULT clock_timestamp())"
)
INSERT_DRILL_MARKER = "INSERT INTO medianest_dr_drill DEFAULT VALUES RETURNING id, noted_at"
COUNT_DRILL_MARKER = "SELECT count(*) FROM medianest_dr_drill WHERE id = %s"


@dataclass(frozen=True)
class DrillMarker:
    """The drill's ground truth: one row written into the live database, and its row counts just after."""

    id: int
    written_at: dt.datetime
    row_counts: dict[str, int]


@task(name="write-drill-marker", task_run_name="drill: mark {database}", cache_policy=NO_CACHE)
def write_drill_marker(cluster_dsn: str, database: str) -> DrillMarker:
    """Write the marker row the restore must bring back, then read every table's row count."""
    dsn = psycopg.conninfo.make_conninfo(cluster_dsn, dbname=database)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(CREATE_DRILL_TABLE)
        row = conn.execute(INSERT_DRILL_MARKER).fetchone()
    if row is None:
        raise DatabaseUnavailableError(f"{database}: the drill marker insert returned nothing")
    return DrillMarker(int(row[0]), row[1], database_facts(dsn).row_counts)


@task(name="check-drill-restore", task_run_name="drill: check the restored cluster", cache_policy=NO_CACHE)
def check_drill_restore(restored_dsn: str, marker: DrillMarker | None, checks: list[str]) -> list[str]:
    """The marker row and at least the marker's rows per table (when replayed to the end), then the app's checks."""
    problems: list[str] = []
    if marker is not None:
        if query_one(restored_dsn, COUNT_DRILL_MARKER, (marker.id,)) != 1:
            problems.append(f"drill marker {marker.id} written at {marker.written_at.isoformat()} is missing")
        actual = database_facts(restored_dsn)
        problems += compare_restore(marker.row_counts, actual.row_counts, None, "", live_source=True)
    return problems + failed_checks(restored_dsn, checks)


@task(name="run-proof-query", task_run_name="proof: {query}", cache_policy=NO_CACHE)
def run_proof_query(restored_dsn: str, query: str) -> object:
    """The operator's own proof that the restored cluster holds what was wanted (first column of the first row)."""
    return query_one(restored_dsn, query)
