"""A repository's backups: store one (objects, then the manifest), list, verify, copy, expire."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from pathlib import Path

from medianest_delivery.backup.codec import EncodedObject
from medianest_delivery.backup.manifest import (
    MANIFEST,
    VALIDATION,
    BackupManifest,
    StoredEntry,
    ValidationRecord,
    ValidationVerdict,
    backup_prefix,
    check_stanza,
)
from medianest_delivery.backup.repository import BackupRepository
from medianest_delivery.backup.retention import BackupSummary, RetentionPlan, RetentionPolicy, plan_retention
from medianest_delivery.errors import ConfigError, RepositoryError, VerificationError


@dataclass(frozen=True)
class CatalogEntry:
    manifest: BackupManifest
    validation: ValidationRecord | None

    @property
    def verified(self) -> bool:
        return self.validation is not None and self.validation.verdict is ValidationVerdict.PASSED

    @property
    def broken(self) -> bool:
        return self.validation is not None and self.validation.verdict is ValidationVerdict.FAILED


def store_objects(
    repository: BackupRepository, stanza: str, backup_id: str, encoded: list[EncodedObject], spool: Path
) -> list[StoredEntry]:
    """Upload each encoded object; each put checks the SHA-256 it was encoded with."""
    prefix = backup_prefix(stanza, backup_id)
    entries = []
    for obj in encoded:
        name = obj.path.relative_to(spool).as_posix()
        key = f"{prefix}/{name}"
        repository.put_file(key, obj.path, obj.sha256)
        entries.append(
            StoredEntry(
                name=name.removesuffix(".zst.enc"), key=key, size=obj.size, sha256=obj.sha256, plain_size=obj.plain_size
            )
        )
    return entries


def commit_manifest(repository: BackupRepository, manifest: BackupManifest) -> None:
    """The manifest goes last: only now does the backup exist for readers and retention."""
    for entry in manifest.objects:
        if not repository.exists(entry.key):
            raise VerificationError(f"{entry.key} is missing from {repository.location}; manifest not written")
    repository.put_bytes(f"{backup_prefix(manifest.stanza, manifest.backup_id)}/{MANIFEST}", manifest.to_bytes())


def load_manifest(repository: BackupRepository, stanza: str, backup_id: str) -> BackupManifest:
    key = f"{backup_prefix(stanza, backup_id)}/{MANIFEST}"
    if not repository.exists(key):
        raise ConfigError(f"backup {backup_id!r} has no manifest in {repository.location} (unknown or incomplete)")
    return BackupManifest.from_bytes(repository.get_bytes(key), f"{repository.location}/{key}")


def load_validation(repository: BackupRepository, stanza: str, backup_id: str) -> ValidationRecord | None:
    key = f"{backup_prefix(stanza, backup_id)}/{VALIDATION}"
    if not repository.exists(key):
        return None
    return ValidationRecord.model_validate_json(repository.get_bytes(key))


def record_validation(repository: BackupRepository, stanza: str, backup_id: str, record: ValidationRecord) -> None:
    repository.put_bytes(f"{backup_prefix(stanza, backup_id)}/{VALIDATION}", record.to_bytes())


def backup_ids(repository: BackupRepository, stanza: str, *, complete_only: bool = True) -> list[str]:
    """Ids of backups in the stanza, oldest first; incomplete ones (no manifest) only on request."""
    ids: dict[str, bool] = {}
    root = f"{check_stanza(stanza)}/backups/"
    for obj in repository.list_objects(root):
        backup_id, _, rest = obj.key[len(root) :].partition("/")
        ids[backup_id] = ids.get(backup_id, False) or rest == MANIFEST
    return sorted(b for b, complete in ids.items() if complete or not complete_only)


def list_catalog(repository: BackupRepository, stanza: str, kind: str | None = None) -> list[CatalogEntry]:
    entries = []
    for backup_id in backup_ids(repository, stanza):
        manifest = load_manifest(repository, stanza, backup_id)
        if kind is None or manifest.kind == kind:
            entries.append(CatalogEntry(manifest, load_validation(repository, stanza, backup_id)))
    return entries


def latest_backup(repository: BackupRepository, stanza: str, kind: str) -> BackupManifest:
    entries = list_catalog(repository, stanza, kind)
    if not entries:
        raise ConfigError(f"no complete {kind} backup of stanza {stanza!r} in {repository.location}")
    return entries[-1].manifest


def verify_objects(repository: BackupRepository, manifest: BackupManifest) -> list[str]:
    """Read every object back; a problem names the object and what differs."""
    problems = []
    for entry in manifest.objects:
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in repository.get_chunks(entry.key):
                digest.update(chunk)
                size += len(chunk)
        except RepositoryError as exc:
            problems.append(f"{entry.key}: {exc}")
            continue
        if size != entry.size:
            problems.append(f"{entry.key}: {size} bytes stored, manifest says {entry.size}")
        elif digest.hexdigest() != entry.sha256:
            problems.append(f"{entry.key}: SHA-256 {digest.hexdigest()} differs from the manifest's {entry.sha256}")
    return problems


def copy_backup(source: BackupRepository, target: BackupRepository, manifest: BackupManifest, spool: Path) -> None:
    """Copy objects through a local spool (each put re-checks the SHA-256), then the manifest."""
    spool.mkdir(parents=True, exist_ok=True)
    for entry in manifest.objects:
        local = spool / hashlib.sha256(entry.key.encode()).hexdigest()
        digest = hashlib.sha256()
        with local.open("wb") as out:
            for chunk in source.get_chunks(entry.key):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != entry.sha256:
            local.unlink()
            raise VerificationError(f"{source.location}/{entry.key} does not match its manifest; not copied")
        target.put_file(entry.key, local, entry.sha256)
        local.unlink()
    commit_manifest(target, manifest)
    problems = verify_objects(target, manifest)
    if problems:
        raise VerificationError(f"copy to {target.location} failed verification: {'; '.join(problems)}")


def plan_stanza_retention(
    repository: BackupRepository, stanza: str, kind: str, policy: RetentionPolicy
) -> tuple[RetentionPlan, list[CatalogEntry]]:
    entries = list_catalog(repository, stanza, kind)
    summaries = [BackupSummary(e.manifest.backup_id, e.manifest.finished_at, e.verified, e.broken) for e in entries]
    return plan_retention(summaries, policy), entries


def expire_backups(repository: BackupRepository, stanza: str, backup_ids_to_delete: list[str]) -> list[str]:
    """Delete the manifest first (the backup stops existing), then its objects."""
    deleted = []
    for backup_id in backup_ids_to_delete:
        prefix = backup_prefix(stanza, backup_id)
        repository.delete([f"{prefix}/{MANIFEST}"])
        repository.delete([o.key for o in repository.list_objects(f"{prefix}/")])
        deleted.append(backup_id)
    return deleted


def backup_age_seconds(manifest: BackupManifest, now: dt.datetime | None = None) -> float:
    return ((now or dt.datetime.now(dt.UTC)) - manifest.finished_at).total_seconds()
