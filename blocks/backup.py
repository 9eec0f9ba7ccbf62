"""Where backups go, and the key that encrypts them."""

from __future__ import annotations

from typing import Literal

from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect_aws import AwsCredentials
from pydantic import Field

from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.repository import BackupRepository
from medianest_delivery.backup.repospec import RepositorySpec, open_repository
from medianest_delivery.errors import ConfigError, MissingBackupKeyError
from medianest_delivery.settings import StackSettings

DEFAULT_KEY_SECRET = "medianest-backup-key"


class BackupStorage(Block):
    """A backup repository: a local directory, or an S3 bucket (AWS, MinIO, any S3-compatible endpoint).

    Credentials and endpoint come from prefect-aws's AwsCredentials block
    (its aws_client_parameters.endpoint_url points at MinIO or another S3).
    """

    _block_type_name = "MediaNest Backup Storage"

    kind: Literal["directory", "s3"] = Field(default="directory", description="directory or s3")
    path: str | None = Field(default=None, description="directory repositories: root directory")
    bucket: str | None = Field(default=None, description="s3 repositories: bucket name")
    prefix: str = Field(default="", description="s3 repositories: key prefix inside the bucket")
    credentials: AwsCredentials | None = Field(
        default=None, description="s3 repositories: keys, region and endpoint (prefect-aws AwsCredentials)"
    )
    max_attempts: int = Field(default=5, description="botocore attempts per request before a task retry")

    def spec(self) -> RepositorySpec:
        if self.kind == "directory":
            if not self.path:
                raise ConfigError("BackupStorage of kind 'directory' needs a path")
            return RepositorySpec(kind="directory", path=self.path)
        if not self.bucket:
            raise ConfigError("BackupStorage of kind 's3' needs a bucket")
        creds = self.credentials or AwsCredentials()
        secret = creds.aws_secret_access_key.get_secret_value() if creds.aws_secret_access_key else None
        return RepositorySpec(
            kind="s3",
            bucket=self.bucket,
            prefix=self.prefix,
            endpoint_url=creds.aws_client_parameters.endpoint_url,
            region=creds.region_name or "us-east-1",
            access_key_id=creds.aws_access_key_id,
            secret_access_key=secret,
            max_attempts=self.max_attempts,
        )

    def get_client(self) -> BackupRepository:
        return open_repository(self.spec())


def load_backup_key(secret_name: str = DEFAULT_KEY_SECRET) -> EncryptionKey:
    """The AES-256 key from a Prefect Secret block; errors say how to create it.

    A missing block is `MissingBackupKeyError`; a block that holds no valid key is a
    plain `ConfigError`: never a reason to make a new key (old backups need the old one).
    """
    try:
        value = Secret.load(secret_name).get()  # type: ignore[union-attr]
    except ValueError as exc:
        raise MissingBackupKeyError(
            f"backup key Secret block {secret_name!r} does not exist; create it with "
            f"`medianest-delivery backup init-key --secret {secret_name}`"
        ) from exc
    if not isinstance(value, str):
        raise ConfigError(f"Secret block {secret_name!r} must hold the key as a string")
    return EncryptionKey.parse(value)


def ensure_backup_key(settings: StackSettings, secret_name: str = DEFAULT_KEY_SECRET) -> EncryptionKey:
    """The key in the Secret block, creating the block (and a 0600 escrow file) only when it is missing.

    An existing Secret always wins; an existing escrow file recreates a lost Secret
    (e.g. a fresh Prefect database) so old backups stay readable.
    """
    escrow = settings.backup_key_file
    try:
        key = load_backup_key(secret_name)
    except MissingBackupKeyError:
        key = EncryptionKey.parse(escrow.read_text()) if escrow.exists() else EncryptionKey.generate()
        Secret(value=key.encoded()).save(secret_name, overwrite=True)
    if not escrow.exists():
        escrow.parent.mkdir(parents=True, exist_ok=True)
        escrow.write_text(key.encoded())
        escrow.chmod(0o600)
    return key
