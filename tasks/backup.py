"""Backup tasks: each does one piece of I/O (pg_dump, the repository, PostgreSQL) and returns plain data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from blocks.backup import BackupStorage, load_backup_key
from blocks.delivery import ReleaseHistoryDatabase
from medianest_delivery.backup.catalog import (
    commit_manifest,
    copy_backup,
    expire_backups,
    latest_backup,
    load_manifest,
    plan_stanza_retention,
    store_objects,
    verify_objects,
)
from medianest_delivery.backup.codec import encode_to_file
from medianest_delivery.backup.logical import DumpResult, database_facts, dump_database, restore_logical
from medianest_delivery.backup.manifest import BackupKind, BackupManifest, new_backup_id
from medianest_delivery.backup.retention import RetentionPolicy
from medianest_delivery.backup.verdicts import compare_restore
from medianest_delivery.errors import ConfigError, DatabaseUnavailableError, RepositoryError, VerificationError
from medianest_delivery.rollout.migrations import create_database, drop_database, failed_checks
from tasks.policies import retry_on

# Faults that go away (a restarted database, an S3 hiccup); resumed uploads make retries cheap.
REPOSITORY_RETRIES: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": [1, 5, 15, 30],
    "retry_condition_fn": retry_on(RepositoryError),
}


@task(
    name="dump-database",
    task_run_name="pg_dump {database_label}",
    retries=3,
    retry_delay_seconds=[2, 10, 30],
    retry_condition_fn=retry_on(DatabaseUnavailableError),
    cache_policy=NO_CACHE,
)
def dump_database_task(
    dsn: str, database_label: str, key_secret: str, spool_dir: str, dump_format: str, jobs: int
) -> DumpResult:
    """pg_dump in an exported snapshot → zstd → AES-256-GCM, with row counts and schema fingerprint."""
    key = load_backup_key(key_secret)
    result = dump_database(dsn, key, Path(spool_dir), dump_format=dump_format, jobs=jobs)
    get_run_logger().info(
        "dumped %s: %d tables, %.1f MB plain → %.1f MB stored",
        result.database,
        len(result.facts.row_counts),
        sum(o.plain_size for o in result.objects) / 1e6,
        sum(o.size for o in result.objects) / 1e6,
    )
    return result


@task(name="store-backup", task_run_name="store {backup_id}", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def store_backup(
    storage: BackupStorage, stanza: str, backup_id: str, dump: DumpResult, spool_dir: str, key_id: str
) -> BackupManifest:
    """Upload every object (checksummed, resumable), then write the manifest that makes it complete."""
    repository = storage.get_client()
    entries = store_objects(repository, stanza, backup_id, dump.objects, Path(spool_dir))
    manifest = BackupManifest(
        backup_id=backup_id,
        kind=BackupKind.LOGICAL,
        stanza=stanza,
        database=dump.database,
        server_version=dump.server_version,
        started_at=dump.started_at,
        finished_at=dump.finished_at,
        wal_start_lsn=dump.wal_lsn,
        timeline=dump.timeline,
        dump_format=dump.dump_format,
        objects=entries,
        row_counts=dump.facts.row_counts,
        schema_fingerprint=dump.facts.schema_fingerprint,
        tool_versions=dump.tool_versions,
        key_id=key_id,
    )
    commit_manifest(repository, manifest)
    return manifest


@task(
    name="replicate-backup",
    task_run_name="copy {manifest.backup_id} to the replica",
    cache_policy=NO_CACHE,
    **REPOSITORY_RETRIES,
)
def replicate_backup(primary: BackupStorage, replica: BackupStorage, manifest: BackupManifest) -> BackupManifest:
    """Copy to the second ("cross-region") repository and verify it there by checksum."""
    source, target = primary.get_client(), replica.get_client()
    with tempfile.TemporaryDirectory(prefix="replicate-") as spool:
        copy_backup(source, target, manifest, Path(spool))
    updated = manifest.model_copy(update={"copies": sorted({*manifest.copies, target.location})})
    source.put_bytes(f"{manifest.stanza}/backups/{manifest.backup_id}/manifest.json", updated.to_bytes())
    return updated


@task(name="apply-retention", task_run_name="retention {stanza} ({kind})", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def apply_retention(
    storage: BackupStorage, stanza: str, kind: str, policy: RetentionPolicy, dry_run: bool
) -> list[tuple[str, str, str]]:
    """GFS over complete backups of `kind`; with dry_run nothing is deleted, the report says what would be."""
    repository = storage.get_client()
    plan, _entries = plan_stanza_retention(repository, stanza, kind, policy)
    if not dry_run:
        expire_backups(repository, stanza, sorted(plan.delete))
    return plan.report()


def _store_single(
    storage: BackupStorage, stanza: str, kind: BackupKind, name: str, payload: bytes, key_secret: str, spool: Path
) -> BackupManifest:
    key = load_backup_key(key_secret)
    started = dt.datetime.now(dt.UTC)
    backup_id = new_backup_id(kind.value, started)
    encoded = encode_to_file(iter([payload]), key, spool / f"{name}.zst.enc")
    repository = storage.get_client()
    entries = store_objects(repository, stanza, backup_id, [encoded], spool)
    manifest = BackupManifest(
        backup_id=backup_id,
        kind=kind,
        stanza=stanza,
        started_at=started,
        finished_at=dt.datetime.now(dt.UTC),
        objects=entries,
        key_id=key.key_id,
    )
    commit_manifest(repository, manifest)
    return manifest


@task(name="backup-configuration", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def backup_configuration(
    storage: BackupStorage, stanza: str, files: list[str], history: ReleaseHistoryDatabase, key_secret: str
) -> BackupManifest:
    """prefect.yaml, router and Prometheus configs and a release-history export, as one encrypted tar."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in files:
            path = Path(name)
            if path.exists():
                archive.add(path, arcname=path.name, recursive=True)
            else:
                get_run_logger().warning("configuration path %s does not exist; skipped", path)
        try:
            events = [dataclasses.asdict(e) for e in history.get_client().events()]
        except ConnectionError as exc:
            get_run_logger().warning("release history not exported: %s", exc)
            events = []
        blob = json.dumps(events, default=str, indent=1).encode()
        info = tarfile.TarInfo("release-history.json")
        info.size = len(blob)
        info.mtime = int(time.time())
        archive.addfile(info, io.BytesIO(blob))
    with tempfile.TemporaryDirectory(prefix="config-backup-") as spool:
        return _store_single(
            storage, stanza, BackupKind.CONFIG, "config.tar", buffer.getvalue(), key_secret, Path(spool)
        )


@task(name="backup-secrets", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def backup_secrets(storage: BackupStorage, stanza: str, key_secret: str) -> BackupManifest:
    """Every Prefect Secret block's value, encrypted with the backup key (which is itself left out:
    a backup cannot hold the key that opens it; keep that key in escrow)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        documents = client.read_block_documents_by_type("secret", include_secrets=True)
    values = {d.name: d.data.get("value") for d in documents if d.name and d.name != key_secret}
    payload = json.dumps(values, default=str).encode()
    with tempfile.TemporaryDirectory(prefix="secrets-backup-") as spool:
        manifest = _store_single(storage, stanza, BackupKind.SECRETS, "secrets.json", payload, key_secret, Path(spool))
    get_run_logger().info("backed up %d secret(s): %s", len(values), ", ".join(sorted(values)) or "none")
    return manifest


@task(name="find-backup", task_run_name="find {backup_id}", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def find_backup(storage: BackupStorage, stanza: str, backup_id: str | None, kind: str = "logical") -> BackupManifest:
    repository = storage.get_client()
    if backup_id is None or backup_id == "latest":
        return latest_backup(repository, stanza, kind)
    return load_manifest(repository, stanza, backup_id)


@task(name="verify-checksums", task_run_name="verify {manifest.backup_id}", cache_policy=NO_CACHE, **REPOSITORY_RETRIES)
def verify_checksums(storage: BackupStorage, manifest: BackupManifest) -> list[str]:
    """Re-read every stored object; each problem names the object."""
    return verify_objects(storage.get_client(), manifest)


@task(
    name="restore-to-scratch",
    task_run_name="restore {manifest.backup_id} into a scratch database",
    cache_policy=NO_CACHE,
)
def restore_to_scratch(
    storage: BackupStorage, manifest: BackupManifest, key_secret: str, scratch_dsn: str, jobs: int
) -> float:
    """Decrypt, decompress and pg_restore into a new scratch database; returns the seconds it took."""
    key = load_backup_key(key_secret)
    if key.key_id != manifest.key_id:
        raise VerificationError(
            f"backup {manifest.backup_id} was encrypted with key id {manifest.key_id}; "
            f"Secret {key_secret!r} holds key id {key.key_id}. Nothing was restored or deleted."
        )
    if manifest.dump_format is None:
        raise ConfigError(f"backup {manifest.backup_id} is a {manifest.kind} backup, not a database dump")
    started = time.monotonic()
    create_database(scratch_dsn)
    restore_logical(storage.get_client(), manifest.objects, manifest.dump_format, key, scratch_dsn, jobs)
    return time.monotonic() - started


@task(name="compare-with-manifest", task_run_name="compare {manifest.backup_id}", cache_policy=NO_CACHE)
def compare_with_manifest(manifest: BackupManifest, scratch_dsn: str, checks: list[str]) -> list[str]:
    """Row counts and schema fingerprint against the manifest, then the app's own sanity queries."""
    facts = database_facts(scratch_dsn)
    problems = compare_restore(
        manifest.row_counts, facts.row_counts, manifest.schema_fingerprint, facts.schema_fingerprint
    )
    return problems + failed_checks(scratch_dsn, checks)


@task(name="drop-scratch-database", task_run_name="drop the scratch database", cache_policy=NO_CACHE)
def drop_scratch_database(scratch_dsn: str) -> None:
    drop_database(scratch_dsn)


def emit_backup_event(event: str, stanza: str, backup_id: str | None, payload: dict[str, Any]) -> None:
    """Prefect events automations can match on (see prefect.yaml / `medianest-delivery automations`)."""
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"medianest.backup.{stanza}",
            "prefect.resource.name": stanza,
            "medianest.backup-id": backup_id or "none",
        },
        payload=payload,
    )
