"""Flows `nightly-backup` and `validate-backup`: backups that are proven by restoring them.

nightly-backup:  lock(stanza) ─ pg_dump in a snapshot → zstd → AES-256-GCM ─ store (resumable, checksummed)
                 ─ manifest ─ copy to replica + verify ─ configuration + secrets backups ─ GFS retention
validate-backup: find ─ verify checksums ─ restore into scratch DB ─ compare rows + schema ─ app checks
                 ─ drop scratch ─ RTO/RPO ─ record verdict, artifact, event (fails loudly on any mismatch)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
import time
import uuid
from typing import Literal

import psycopg
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from pydantic import SecretStr

from blocks.backup import DEFAULT_KEY_SECRET, BackupStorage, load_backup_key
from blocks.delivery import ReleaseHistoryDatabase
from blocks.loading import load_or_default
from blocks.runtime import environment_database_server
from medianest_delivery.appconfig import DEFAULT_APP_CONFIG, load_app_config
from medianest_delivery.backup.catalog import backup_age_seconds, record_validation
from medianest_delivery.backup.manifest import (
    BackupKind,
    BackupManifest,
    ValidationRecord,
    ValidationVerdict,
    new_backup_id,
)
from medianest_delivery.backup.retention import RetentionPolicy
from medianest_delivery.backup.verdicts import RecoveryObjectives, assess_objectives
from medianest_delivery.dsn import reveal
from medianest_delivery.errors import DeliveryError, VerificationError
from medianest_delivery.renderers import backup_markdown, validation_markdown
from medianest_delivery.settings import PROJECT_ROOT, StackSettings
from tasks.backup import (
    apply_retention,
    backup_configuration,
    backup_secrets,
    compare_with_manifest,
    drop_scratch_database,
    dump_database_task,
    emit_backup_event,
    find_backup,
    replicate_backup,
    restore_to_scratch,
    store_backup,
    verify_checksums,
)
from tasks.locks import exclusive


def default_storage(settings: StackSettings) -> BackupStorage:
    return BackupStorage(kind="directory", path=str(settings.backups_dir))


def default_replica(settings: StackSettings) -> BackupStorage:
    return BackupStorage(kind="directory", path=str(settings.state_dir / "backups-replica"))


def _target(
    app_config: str, environment: str, database_url: SecretStr | None, stanza: str | None
) -> tuple[str, str, list[str]]:
    config = load_app_config(app_config)
    dsn = reveal(database_url) or config.database_url(environment, environment_database_server(environment))
    checks = config.database.checks if config.database else []
    return dsn, stanza or f"{config.name}-{environment}", checks


@flow(name="nightly-backup", log_prints=True)
def nightly_backup(
    app_config: str = DEFAULT_APP_CONFIG,
    environment: str = "production",
    database_url: SecretStr | None = None,
    stanza: str | None = None,
    storage_block: str | None = None,
    replica_block: str | None = None,
    replicate: bool = True,
    key_secret: str = DEFAULT_KEY_SECRET,
    dump_format: Literal["custom", "directory"] = "custom",
    jobs: int = 2,
    retention_daily: int = 7,
    retention_weekly: int = 4,
    retention_monthly: int = 12,
    retention_dry_run: bool = False,
    include_configuration: bool = True,
    include_secrets: bool = True,
    history_block: str | None = None,
    lock_timeout_seconds: float = 3600,
) -> BackupManifest:
    """Back up the app's database (one run at a time per stanza), copy it, expire old backups."""
    logger = get_run_logger()
    settings = StackSettings()
    dsn, stanza_name, _checks = _target(app_config, environment, database_url, stanza)
    policy = RetentionPolicy(retention_daily, retention_weekly, retention_monthly)
    primary = load_or_default(BackupStorage, storage_block, default_storage(settings))
    replica = load_or_default(BackupStorage, replica_block, default_replica(settings))
    history = load_or_default(ReleaseHistoryDatabase, history_block, ReleaseHistoryDatabase())
    key_id = load_backup_key(key_secret).key_id  # fail before any work if the key is missing
    started = time.monotonic()
    backup_id = new_backup_id(BackupKind.LOGICAL.value, dt.datetime.now(dt.UTC))
    try:
        with exclusive(
            f"backup-{stanza_name}",
            timeout_seconds=lock_timeout_seconds,
            busy=f"stanza {stanza_name} is busy: another backup holds it",
        ):
            spool_root = settings.state_dir / "spool"
            spool_root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=spool_root, prefix=f"{backup_id}-") as spool:
                label = psycopg.conninfo.conninfo_to_dict(dsn).get("dbname") or stanza_name
                dump = dump_database_task(dsn, str(label), key_secret, spool, dump_format, jobs)
                manifest = store_backup(primary, stanza_name, backup_id, dump, spool, key_id)
            if replicate:
                manifest = replicate_backup(primary, replica, manifest)
            extras = []
            if include_configuration:
                files = [  # configuration only: Prometheus's config, not its TSDB
                    str(PROJECT_ROOT / "prefect.yaml"),
                    str(PROJECT_ROOT / "deployments"),
                    str(settings.routers_dir),
                    str(settings.state_dir / "prometheus" / "prometheus.yml"),
                ]
                extras.append(backup_configuration(primary, stanza_name, files, history, key_secret))
            if include_secrets:
                extras.append(backup_secrets(primary, stanza_name, key_secret))
            retention = []
            kinds = [BackupKind.LOGICAL]
            kinds += [BackupKind.CONFIG] if include_configuration else []
            kinds += [BackupKind.SECRETS] if include_secrets else []
            for kind in kinds:
                retention += apply_retention(primary, stanza_name, kind.value, policy, retention_dry_run)
                if replicate and kind is BackupKind.LOGICAL:
                    retention += apply_retention(replica, stanza_name, kind.value, policy, retention_dry_run)
    except (DeliveryError, OSError) as exc:
        emit_backup_event("medianest.backup.failed", stanza_name, backup_id, {"error": str(exc)})
        raise
    elapsed = time.monotonic() - started
    create_markdown_artifact(
        key=f"backup-{stanza_name}",
        description=f"nightly-backup {manifest.backup_id}",
        markdown=backup_markdown(manifest, stanza_name, elapsed, extras, retention, retention_dry_run),
    )
    emit_backup_event(
        "medianest.backup.completed",
        stanza_name,
        manifest.backup_id,
        {"size": manifest.size, "plain_size": manifest.plain_size, "seconds": manifest.duration_s},
    )
    logger.info("backup %s complete in %.1f s", manifest.backup_id, elapsed)
    return manifest


@flow(name="validate-backup", log_prints=True)
def validate_backup(
    app_config: str = DEFAULT_APP_CONFIG,
    environment: str = "production",
    database_url: SecretStr | None = None,
    stanza: str | None = None,
    backup_id: str = "latest",
    storage_block: str | None = None,
    key_secret: str = DEFAULT_KEY_SECRET,
    restore_server: SecretStr | None = None,
    jobs: int = 2,
    rto_target_minutes: float = 30,
    rpo_target_hours: float = 24,
) -> ValidationRecord:
    """Prove a backup restores: any mismatch fails the run, records the verdict and emits an event."""
    settings = StackSettings()
    dsn, stanza_name, checks = _target(app_config, environment, database_url, stanza)
    storage = load_or_default(BackupStorage, storage_block, default_storage(settings))
    started = time.monotonic()
    manifest = find_backup(storage, stanza_name, backup_id)
    server = reveal(restore_server) or dsn
    scratch = psycopg.conninfo.make_conninfo(server, dbname=f"restore_check_{uuid.uuid4().hex[:10]}")
    problems = verify_checksums(storage, manifest)
    restore_seconds = None
    if not problems:
        try:
            restore_seconds = restore_to_scratch(storage, manifest, key_secret, scratch, jobs)
            problems += compare_with_manifest(manifest, scratch, checks)
        except DeliveryError as exc:
            problems.append(str(exc))
        finally:
            with contextlib.suppress(DeliveryError, psycopg.Error):
                drop_scratch_database(scratch)
    rto = time.monotonic() - started
    rpo = backup_age_seconds(manifest)
    targets = RecoveryObjectives(rto_target_minutes * 60, rpo_target_hours * 3600)
    objectives = assess_objectives(rto, rpo, targets)
    verdict = ValidationVerdict.FAILED if problems else ValidationVerdict.PASSED
    record = ValidationRecord(
        verdict=verdict,
        validated_at=dt.datetime.now(dt.UTC),
        restore_seconds=restore_seconds,
        backup_age_seconds=rpo,
        problems=problems,
    )
    record_validation(storage.get_client(), stanza_name, manifest.backup_id, record)
    create_markdown_artifact(
        key=f"backup-validation-{stanza_name}",
        description=f"validate-backup {manifest.backup_id}: {verdict}",
        markdown=validation_markdown(manifest, record, objectives, targets, len(checks)),
    )
    payload = {"rto_seconds": rto, "rpo_seconds": rpo, "problems": problems}
    if problems:
        emit_backup_event("medianest.backup.validation-failed", stanza_name, manifest.backup_id, payload)
        raise VerificationError(f"backup {manifest.backup_id} failed validation: " + "; ".join(problems))
    emit_backup_event("medianest.backup.validated", stanza_name, manifest.backup_id, payload)
    return record
