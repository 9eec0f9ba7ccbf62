"""Both repository backends over real I/O: a directory, and S3 over HTTP on loopback.

The S3 server is moto's server mode started by the stack: an S3 *emulator*
(AWS itself cannot be reached from here); boto3 talks real HTTP to it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from medianest_delivery.backup.repository import BackupRepository, DirectoryRepository
from medianest_delivery.backup.repospec import RepositorySpec, open_repository, s3_client
from medianest_delivery.backup.s3repo import S3Repository
from medianest_delivery.errors import ConfigError, RepositoryError, VerificationError
from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.settings import StackSettings
from tests.flaky_proxy import FlakyProxy

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_emulator() -> str:
    settings = StackSettings()
    stack_up(settings, {"s3-emulator"})
    return settings.s3_endpoint


def emulator_spec(endpoint: str, bucket: str, **extra: object) -> RepositorySpec:
    spec = RepositorySpec(
        kind="s3",
        bucket=bucket,
        prefix="medianest",
        endpoint_url=endpoint,
        access_key_id="emulator",
        secret_access_key="emulator-secret",
        **extra,  # type: ignore[arg-type]
    )
    s3_client(spec).create_bucket(Bucket=bucket)
    return spec


@pytest.fixture(params=["directory", "s3-emulator"])
def repository(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackupRepository]:
    if request.param == "directory":
        yield DirectoryRepository(tmp_path / "repo")
    else:
        endpoint = request.getfixturevalue("s3_emulator")
        yield open_repository(emulator_spec(endpoint, f"it-{uuid.uuid4().hex[:10]}"))


def _file(path: Path, size: int) -> tuple[Path, str]:
    data = os.urandom(size)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_put_list_get_delete_round_trip(repository: BackupRepository, tmp_path: Path) -> None:
    """Small and multipart-sized objects come back byte for byte, listed under their prefix."""
    small, small_sha = _file(tmp_path / "small", 1000)
    large, large_sha = _file(tmp_path / "large", 13 * MIB)
    repository.put_file("db/backups/1/small.enc", small, small_sha)
    repository.put_file("db/backups/1/large.enc", large, large_sha)
    repository.put_bytes("db/backups/1/manifest.json", b"{}")
    listed = {o.key: o.size for o in repository.list_objects("db/backups/1/")}
    assert listed == {
        "db/backups/1/small.enc": 1000,
        "db/backups/1/large.enc": 13 * MIB,
        "db/backups/1/manifest.json": 2,
    }
    assert [o.key for o in repository.list_objects("db/backups/1/la")] == ["db/backups/1/large.enc"]
    assert hashlib.sha256(b"".join(repository.get_chunks("db/backups/1/large.enc"))).hexdigest() == large_sha
    repository.delete(["db/backups/1/small.enc", "db/backups/1/large.enc", "db/backups/1/manifest.json"])
    assert repository.list_objects("db/") == []
    assert not repository.exists("db/backups/1/manifest.json")


def test_wrong_checksum_stores_nothing(repository: BackupRepository, tmp_path: Path) -> None:
    """If the bytes read are not the bytes the caller hashed, nothing appears under the key."""
    source, _ = _file(tmp_path / "obj", 2000)
    with pytest.raises(VerificationError, match="obj"):
        repository.put_file("db/obj", source, "0" * 64)
    assert repository.list_objects("db/") == []


def test_missing_object_is_named(repository: BackupRepository) -> None:
    with pytest.raises(RepositoryError, match="db/nothing-here does not exist"):
        repository.get_bytes("db/nothing-here")


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b"])
def test_unsafe_keys_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="relative path"):
        DirectoryRepository(tmp_path).put_bytes(key, b"x")


def test_s3_upload_failing_midway_resumes_without_resending_parts(s3_emulator: str, tmp_path: Path) -> None:
    """The S3 endpoint starts failing after two parts: the upload fails, nothing is visible;
    the next attempt resumes the same multipart upload and sends only the missing parts."""
    bucket = f"it-{uuid.uuid4().hex[:10]}"
    emulator_spec(s3_emulator, bucket)
    source, sha = _file(tmp_path / "dump.enc", 30 * MIB)  # 4 parts of 8 MiB
    upstream = s3_emulator.removeprefix("http://")
    # create-upload + 2 parts forwarded, then the proxy answers 503 to everything
    with FlakyProxy(upstream, failures=0, break_after=3) as proxy:
        spec = RepositorySpec(
            kind="s3",
            bucket=bucket,
            endpoint_url=f"http://{proxy.address}",
            access_key_id="emulator",
            secret_access_key="emulator-secret",
            max_attempts=2,
        )
        repository = open_repository(spec)
        assert isinstance(repository, S3Repository)
        with pytest.raises(RepositoryError, match="upload of part 3"):
            repository.put_file("db/dump.enc", source, sha)
        direct = open_repository(emulator_spec_no_create(s3_emulator, bucket))
        assert direct.list_objects("db/") == [], "a failed upload must leave nothing visible"
        assert (tmp_path / "dump.enc.upload.json").exists()
        proxy.broken = False
        repository.put_file("db/dump.enc", source, sha)
    assert repository.parts_uploaded == 2, "parts 1-2 were already held by the server"
    uploads = [p for p in proxy.paths if "partNumber=" in p]
    assert sorted(int(p.split("partNumber=")[1].split("&")[0]) for p in uploads) == [1, 2, 3, 4]
    assert hashlib.sha256(b"".join(direct.get_chunks("db/dump.enc"))).hexdigest() == sha
    assert not (tmp_path / "dump.enc.upload.json").exists()


def emulator_spec_no_create(endpoint: str, bucket: str) -> RepositorySpec:
    return RepositorySpec(
        kind="s3", bucket=bucket, endpoint_url=endpoint, access_key_id="emulator", secret_access_key="emulator-secret"
    )
