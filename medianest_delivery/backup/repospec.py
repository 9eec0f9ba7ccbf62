"""A repository described by plain values, and the one place that opens it.

Blocks (blocks/backup.py) and the WAL archiver's config file both describe a
repository this way; `open_repository` turns the description into a backend.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from medianest_delivery.backup.repository import BackupRepository, DirectoryRepository
from medianest_delivery.backup.s3repo import PART_SIZE, S3Repository
from medianest_delivery.errors import ConfigError


@dataclass(frozen=True)
class RepositorySpec:
    kind: Literal["directory", "s3"]
    path: str = ""
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in logs, errors or repr()
    max_attempts: int = 5
    part_size: int = PART_SIZE

    def __post_init__(self) -> None:
        if self.kind == "directory" and not self.path:
            raise ConfigError("a directory repository needs a path")
        if self.kind == "s3" and not self.bucket:
            raise ConfigError("an S3 repository needs a bucket")
        if self.kind not in ("directory", "s3"):
            raise ConfigError(f"repository kind {self.kind!r} is not 'directory' or 's3'")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> RepositorySpec:
        try:
            return cls(**raw)
        except TypeError as exc:
            raise ConfigError(f"repository description is invalid: {exc}") from exc


def s3_client(spec: RepositorySpec) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=spec.endpoint_url,
        region_name=spec.region,
        aws_access_key_id=spec.access_key_id,
        aws_secret_access_key=spec.secret_access_key,
        config=Config(
            retries={"max_attempts": spec.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=60,
            # Our own Content-MD5 and ETag checks cover integrity; newer botocore
            # would otherwise add CRC trailers some S3-compatible servers reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def open_repository(spec: RepositorySpec) -> BackupRepository:
    if spec.kind == "directory":
        return DirectoryRepository(Path(spec.path))
    return S3Repository(s3_client(spec), spec.bucket, spec.prefix, spec.part_size)
