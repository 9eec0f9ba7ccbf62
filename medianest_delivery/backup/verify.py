"""Like pgBackRest's `verify`: walk a stanza, check every object, find WAL gaps that break PITR."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from medianest_delivery.backup.catalog import backup_ids, list_catalog, verify_objects
from medianest_delivery.backup.codec import decode_chunks
from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.manifest import BackupKind
from medianest_delivery.backup.repository import BackupRepository
from medianest_delivery.backup.walarchive import SUFFIX, split_segment_key, wal_prefix
from medianest_delivery.backup.walchain import DEFAULT_SEGMENT_SIZE, find_gaps, missing_for_recovery, segment_of
from medianest_delivery.errors import DeliveryError


@dataclass
class VerifyReport:
    backups_checked: int = 0
    objects_checked: int = 0
    wal_checked: int = 0
    problems: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.gaps


def verify_stanza(repository: BackupRepository, stanza: str, key: EncryptionKey) -> VerifyReport:
    report = VerifyReport()
    complete = set(backup_ids(repository, stanza))
    for backup_id in backup_ids(repository, stanza, complete_only=False):
        if backup_id not in complete:
            report.problems.append(f"backup {backup_id} has objects but no manifest (an interrupted backup)")
    catalog = list_catalog(repository, stanza)
    segment_size = DEFAULT_SEGMENT_SIZE
    for entry in catalog:
        report.backups_checked += 1
        report.objects_checked += len(entry.manifest.objects)
        report.problems += verify_objects(repository, entry.manifest)
        if entry.manifest.wal_segment_size:
            segment_size = entry.manifest.wal_segment_size
    names = []
    for obj in repository.list_objects(f"{wal_prefix(stanza)}/"):
        if not obj.key.endswith(SUFFIX):
            continue
        name, plain_sha = split_segment_key(obj.key)
        names.append(name)
        report.wal_checked += 1
        digest = hashlib.sha256()
        try:
            for chunk in decode_chunks(repository.get_chunks(obj.key), key, obj.key):
                digest.update(chunk)
        except DeliveryError as exc:
            report.problems.append(str(exc))
            continue
        if digest.hexdigest() != plain_sha:
            report.problems.append(f"{obj.key}: WAL content SHA-256 {digest.hexdigest()} does not match its name")
    for gap in find_gaps(names, segment_size):
        report.gaps.append(
            f"timeline {gap.timeline}: {gap.count} segment(s) missing, {gap.first_missing} … {gap.last_missing}"
        )
    for entry in catalog:
        manifest = entry.manifest
        if manifest.kind is not BackupKind.BASE or not manifest.wal_start_lsn or not manifest.wal_end_lsn:
            continue
        timeline = manifest.timeline or 1
        missing = missing_for_recovery(
            names,
            segment_of(manifest.wal_start_lsn, timeline, segment_size),
            segment_of(manifest.wal_end_lsn, timeline, segment_size),
            segment_size,
        )
        if missing:
            report.problems.append(
                f"base backup {manifest.backup_id} cannot be made consistent: WAL {', '.join(missing)} missing"
            )
    return report
