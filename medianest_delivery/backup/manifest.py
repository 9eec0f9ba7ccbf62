"""What a backup is: its manifest, and where its objects live in a repository.

Layout (one "stanza" per database cluster or database, as in pgBackRest):

    <stanza>/backups/<backup id>/manifest.json     written last: marks the backup complete
    <stanza>/backups/<backup id>/<object>.zst.enc
    <stanza>/backups/<backup id>/validation.json   the latest restore validation's verdict
    <stanza>/wal/<timeline+log>/<segment>-<sha256 of the plain segment>.zst.enc
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import re
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from medianest_delivery.errors import ConfigError, VerificationError

STANZA = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MANIFEST = "manifest.json"
VALIDATION = "validation.json"


def check_stanza(stanza: str) -> str:
    if not STANZA.match(stanza):
        raise ConfigError(f"stanza {stanza!r} must be lowercase letters, digits and . _ - (max 63)")
    return stanza


def backup_prefix(stanza: str, backup_id: str) -> str:
    return f"{check_stanza(stanza)}/backups/{backup_id}"


def new_backup_id(kind: str, when: dt.datetime) -> str:
    return f"{when.astimezone(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{kind}"


class BackupKind(enum.StrEnum):
    LOGICAL = "logical"  # pg_dump of one database
    BASE = "base"  # pg_basebackup of a cluster, restored with WAL for PITR
    CONFIG = "config"  # deployment configuration files
    SECRETS = "secrets"  # Prefect secret values, encrypted like everything else


class StoredEntry(BaseModel):
    """One object of a backup: its key, stored size and SHA-256, and plaintext size."""

    name: str
    key: str
    size: int
    sha256: str
    plain_size: int


class BackupManifest(BaseModel):
    format_version: Literal[1] = 1
    backup_id: str
    kind: BackupKind
    stanza: str
    database: str | None = None
    server_version: str | None = None
    started_at: dt.datetime
    finished_at: dt.datetime
    wal_start_lsn: str | None = Field(default=None, description="WAL position when the snapshot was taken")
    wal_end_lsn: str | None = None
    timeline: int | None = None
    wal_segment_size: int | None = None
    dump_format: str | None = Field(default=None, description="pg_dump format: custom or directory")
    objects: list[StoredEntry]
    row_counts: dict[str, int] = Field(default_factory=dict)
    schema_fingerprint: str | None = None
    tool_versions: dict[str, str] = Field(default_factory=dict)
    key_id: str
    copies: list[str] = Field(default_factory=list, description="Other repositories holding a verified copy")

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    @property
    def plain_size(self) -> int:
        return sum(o.plain_size for o in self.objects)

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> BackupManifest:
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise VerificationError(f"manifest {where} is unreadable: {exc.errors()[0]['msg']}") from exc


class ValidationVerdict(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"


class ValidationRecord(BaseModel):
    """The outcome of the latest restore validation of one backup."""

    verdict: ValidationVerdict
    validated_at: dt.datetime
    restore_seconds: float | None = None
    backup_age_seconds: float | None = None
    problems: list[str] = Field(default_factory=list)

    def to_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2).encode()
