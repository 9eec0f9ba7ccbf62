"""Flows for continuous archiving and point-in-time recovery.

base-backup:       lock(stanza) ─ pg_basebackup → store ─ check archiving ─ retention ─ expire WAL
verify-repository: check (WAL switch reaches the repository) ─ verify every object and the WAL chain
pitr-restore:      pick base backup ─ scratch cluster ─ replay WAL to time/LSN ─ prove the target
dr-drill:          marker write ─ archive it ─ declare loss ─ restore to the end of the archive
                   ─ marker and app checks ─ RTO/RPO against targets ─ tear down
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import SecretStr

from blocks.backup import DEFAULT_KEY_SECRET, BackupStorage, load_backup_key
from blocks.loading import load_or_default
from flows.backup import default_storage
from medianest_delivery.appconfig import DEFAULT_APP_CONFIG, load_app_config
from medianest_delivery.backup.manifest import BackupKind, BackupManifest
from medianest_delivery.backup.physical import RecoveryResult, RecoveryTarget
from medianest_delivery.backup.retention import RetentionPolicy
from medianest_delivery.backup.verdicts import RecoveryObjectives, assess_objectives, target_reached
from medianest_delivery.backup.verify import VerifyReport
from medianest_delivery.dsn import reveal
from medianest_delivery.errors import ConfigError, VerificationError
from medianest_delivery.renderers import dr_drill_markdown, pitr_markdown
from medianest_delivery.settings import StackSettings
from tasks.backup import apply_retention, emit_backup_event
from tasks.locks import exclusive
from tasks.pitr import (
    base_backup_for,
    check_archiving,
    check_drill_restore,
    expire_wal,
    remove_scratch_cluster,
    restore_point_in_time,
    run_proof_query,
    take_and_store_base_backup,
    verify_repository,
    write_drill_marker,
)


def parse_target(target_time: str | None, target_lsn: str | None) -> RecoveryTarget:
    when = None
    if target_time:
        try:
            when = dt.datetime.fromisoformat(target_time)
        except ValueError as exc:
            raise ConfigError(f"target_time {target_time!r} is not an ISO 8601 time") from exc
    return RecoveryTarget(time=when, lsn=target_lsn or None)


@flow(name="base-backup", log_prints=True)
def base_backup(
    cluster_dsn: SecretStr,
    stanza: str,
    storage_block: str | None = None,
    key_secret: str = DEFAULT_KEY_SECRET,
    retention_daily: int = 7,
    retention_weekly: int = 4,
    retention_monthly: int = 0,
    retention_dry_run: bool = False,
    lock_timeout_seconds: float = 3600,
) -> BackupManifest:
    """A pg_basebackup of the cluster, proof that archiving works, and expiry of what PITR no longer needs."""
    cluster = reveal(cluster_dsn) or ""
    storage = load_or_default(BackupStorage, storage_block, default_storage(StackSettings()))
    load_backup_key(key_secret)
    with exclusive(
        f"backup-{stanza}",
        timeout_seconds=lock_timeout_seconds,
        busy=f"stanza {stanza} is busy: another backup holds it",
    ):
        manifest = take_and_store_base_backup(storage, stanza, cluster, key_secret)
        check = check_archiving(storage, stanza, cluster)
        policy = RetentionPolicy(retention_daily, retention_weekly, retention_monthly)
        retention = apply_retention(storage, stanza, BackupKind.BASE.value, policy, retention_dry_run)
        expired = expire_wal(storage, stanza, retention_dry_run)
    create_markdown_artifact(
        key=f"base-backup-{stanza}",
        markdown=(
            f"# Base backup {manifest.backup_id}\n\n| field | value |\n|---|---|\n"
            f"| WAL range | {manifest.wal_start_lsn} … {manifest.wal_end_lsn} (timeline {manifest.timeline}) |\n"
            f"| stored | {manifest.size / 1e6:.1f} MB (plain {manifest.plain_size / 1e6:.1f} MB) |\n"
            f"| duration | {manifest.duration_s:.1f} s |\n"
            f"| archiving check | {check['segment']} archived in {float(str(check['seconds'])):.2f} s |\n"
            f"| retention | {sum(1 for r in retention if r[1] == 'delete')} base backup(s) expired |\n"
            f"| WAL expired | {len(expired)} segment(s){' (dry run)' if retention_dry_run else ''} |\n"
        ),
    )
    emit_backup_event("medianest.backup.completed", stanza, manifest.backup_id, {"kind": "base"})
    return manifest


@flow(name="verify-repository", log_prints=True)
def verify_repository_flow(
    stanza: str,
    cluster_dsn: SecretStr | None = None,
    storage_block: str | None = None,
    key_secret: str = DEFAULT_KEY_SECRET,
) -> VerifyReport:
    """check (with a cluster: a forced WAL switch must reach the repository) then verify everything stored."""
    cluster = reveal(cluster_dsn)
    storage = load_or_default(BackupStorage, storage_block, default_storage(StackSettings()))
    if cluster:
        check_archiving(storage, stanza, cluster)
    report = verify_repository(storage, stanza, key_secret)
    lines = "\n".join(f"- {p}" for p in report.problems + report.gaps) or "none"
    create_markdown_artifact(
        key=f"verify-{stanza}",
        markdown=(
            f"# Repository verify: {'OK' if report.ok else 'PROBLEMS'}\n\n"
            f"{report.backups_checked} backups, {report.objects_checked} objects, {report.wal_checked} WAL files checked.\n\n"
            f"## Problems and gaps\n\n{lines}\n"
        ),
    )
    if not report.ok:
        emit_backup_event("medianest.backup.verify-failed", stanza, None, {"problems": report.problems + report.gaps})
        raise VerificationError(f"repository verify of {stanza} found: " + "; ".join(report.problems + report.gaps))
    return report


@flow(name="pitr-restore", log_prints=True)
def pitr_restore(
    stanza: str,
    target_time: str | None = None,
    target_lsn: str | None = None,
    backup_id: str = "latest",
    storage_block: str | None = None,
    key_secret: str = DEFAULT_KEY_SECRET,
    keep_running: bool = True,
    proof_query: str | None = None,
    proof_database: str = "postgres",
) -> dict[str, Any]:
    """Restore a base backup into a scratch cluster and replay WAL to a time or LSN, proving where it stopped.

    The scratch cluster keeps running (keep_running) for the operator; its port is in the result and artifact.
    """
    settings = StackSettings()
    storage = load_or_default(BackupStorage, storage_block, default_storage(settings))
    target = parse_target(target_time, target_lsn)
    manifest = base_backup_for(storage, stanza, backup_id, target.time)
    result = restore_point_in_time(storage, manifest, key_secret, target, target.describe(), str(settings.clusters_dir))
    reached, evidence = target_reached(
        target.time, target.lsn, result.replayed_lsn, result.stop_line, result.last_transaction_at
    )
    proof = None
    try:
        if proof_query:
            proof = run_proof_query(f"postgresql://postgres@127.0.0.1:{result.port}/{proof_database}", proof_query)
    finally:
        if not keep_running:
            remove_scratch_cluster(str(result.data_dir), result.port)
    create_markdown_artifact(
        key=f"pitr-{stanza}",
        markdown=pitr_markdown(manifest, target, result, reached, evidence, keep_running, proof_query, proof),
    )
    if not reached or (proof_query and not proof):
        raise VerificationError(f"PITR of {stanza} to {target.describe()} not proven: {evidence}; proof={proof!r}")
    return {
        "port": result.port,
        "data_dir": str(result.data_dir),
        "replayed_lsn": result.replayed_lsn,
        "evidence": evidence,
        "last_transaction_at": result.last_transaction_at.isoformat() if result.last_transaction_at else None,
        "seconds": result.seconds,
        "proof": proof,
    }


@flow(name="dr-drill", log_prints=True)
def dr_drill(
    stanza: str,
    cluster_dsn: SecretStr,
    database: str = "postgres",
    app_config: str | None = DEFAULT_APP_CONFIG,
    storage_block: str | None = None,
    key_secret: str = DEFAULT_KEY_SECRET,
    target_time: str | None = None,
    target_lsn: str | None = None,
    rto_target_minutes: float = 30,
    rpo_target_minutes: float = 5,
    keep_cluster: bool = False,
) -> dict[str, Any]:
    """Declare the database lost and get it back from the repository alone, measuring RTO and RPO.

    The live cluster is only read and given one marker row (to know exactly what
    must come back); the restore goes to a new scratch cluster, never over it.
    Connection strings carry no password (flow parameters are shown in the UI):
    the worker gets it from ~/.pgpass, PGPASSFILE or PGPASSWORD.
    """
    cluster = reveal(cluster_dsn) or ""
    logger = get_run_logger()
    settings = StackSettings()
    storage = load_or_default(BackupStorage, storage_block, default_storage(settings))
    marker = write_drill_marker(cluster, database)
    check_archiving(storage, stanza, cluster)  # the marker's WAL is in the repository
    lost_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    logger.warning("drill: %s declared lost at %s (marker %d)", stanza, lost_at.isoformat(), marker.id)
    target = parse_target(target_time, target_lsn)
    manifest = base_backup_for(storage, stanza, "latest", target.time)
    result: RecoveryResult = restore_point_in_time(
        storage, manifest, key_secret, target, target.describe(), str(settings.clusters_dir)
    )
    try:
        config = load_app_config(app_config) if app_config and database != "postgres" else None
        problems = check_drill_restore(
            f"postgresql://postgres@127.0.0.1:{result.port}/{database}",
            marker if target.time is None and target.lsn is None else None,  # only the end of the archive has it all
            config.database.checks if config and config.database else [],
        )
        rto = time.monotonic() - started  # restored *and* checked: ready to take traffic
    finally:
        if not keep_cluster:
            remove_scratch_cluster(str(result.data_dir), result.port)
    recovered_until = result.last_transaction_at or manifest.finished_at
    rpo = max(0.0, (lost_at - recovered_until).total_seconds())
    targets = RecoveryObjectives(rto_target_minutes * 60, rpo_target_minutes * 60)
    objectives = assess_objectives(rto, rpo, targets)
    create_markdown_artifact(
        key=f"dr-drill-{stanza}",
        markdown=dr_drill_markdown(manifest, target, result, objectives, targets, recovered_until, problems),
    )
    outcome = {"rto_seconds": rto, "rpo_seconds": rpo, "problems": problems, "marker": marker.id, "met": objectives.met}
    if problems or not objectives.met:
        emit_backup_event("medianest.dr-drill.failed", stanza, manifest.backup_id, outcome)
        raise VerificationError(
            f"DR drill of {stanza} failed: {problems or 'objectives missed'} (RTO {rto:.0f}s, RPO {rpo:.0f}s)"
        )
    emit_backup_event("medianest.dr-drill.passed", stanza, manifest.backup_id, outcome)
    return outcome
