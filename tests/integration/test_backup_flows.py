"""nightly-backup and validate-backup against real PostgreSQL, a directory repository and
the S3 emulator (moto server on loopback), under the Prefect test harness."""

from __future__ import annotations

import io
import socket
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from prefect import flow
from prefect.blocks.system import Secret
from prefect.concurrency.sync import concurrency
from prefect_aws import AwsCredentials

from blocks.backup import BackupStorage
from flows.backup import nightly_backup, validate_backup
from medianest_delivery.backup.catalog import backup_ids, list_catalog, load_validation
from medianest_delivery.backup.codec import decode_chunks
from medianest_delivery.backup.crypto import HEADER_LENGTH, EncryptionKey
from medianest_delivery.backup.manifest import ValidationVerdict
from medianest_delivery.backup.repospec import s3_client
from medianest_delivery.backup.retention import RetentionPolicy
from medianest_delivery.errors import ConfigError, DatabaseUnavailableError, DeliveryError, VerificationError
from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.rollout.migrations import apply_migrations, create_database, discover_migrations, drop_database
from medianest_delivery.settings import StackSettings
from tasks.backup import apply_retention, dump_database_task
from tests.flaky_proxy import FlakyProxy

pytestmark = pytest.mark.integration
MIGRATIONS = Path(__file__).resolve().parents[2] / "examples" / "medianest" / "migrations"
SERVER = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture(scope="module")
def backup_key(prefect_harness: None) -> str:
    name = f"it-backup-key-{uuid.uuid4().hex[:6]}"
    Secret(value=EncryptionKey.generate().encoded()).save(name, overwrite=True)
    return name


@pytest.fixture
def source_db() -> Iterator[str]:
    """A MediaNest database (the app's own migrations) with 20,000 media rows."""
    dsn = f"{SERVER}/backup_it_{uuid.uuid4().hex[:8]}"
    create_database(dsn)
    apply_migrations(dsn, discover_migrations(MIGRATIONS))
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO media (title, kind) SELECT 'film ' || g, 'movie' FROM generate_series(1, 20000) g")
    yield dsn
    drop_database(dsn)


def directory_storage(tmp_path: Path, name: str = "repo") -> BackupStorage:
    return BackupStorage(kind="directory", path=str(tmp_path / name))


def emulator_storage(endpoint: str, max_attempts: int = 5) -> BackupStorage:
    """A bucket on the S3 emulator, configured through prefect-aws's AwsCredentials block."""
    bucket = f"it-{uuid.uuid4().hex[:10]}"
    storage = BackupStorage(
        kind="s3",
        bucket=bucket,
        prefix="nightly",
        credentials=AwsCredentials(
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator-secret",
            region_name="eu-west-1",
            aws_client_parameters={"endpoint_url": endpoint},
        ),
        max_attempts=max_attempts,
    )
    s3_client(storage.spec()).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return storage


@pytest.fixture(scope="module")
def s3_endpoint() -> str:
    settings = StackSettings()
    stack_up(settings, {"s3-emulator"})
    return settings.s3_endpoint


def save(storage: BackupStorage) -> str:
    name = f"it-storage-{uuid.uuid4().hex[:8]}"
    storage.save(name, overwrite=True)
    return name


def database_backup_only(database_url: str, stanza: str, storage_block: str, key_secret: str, **extra: Any) -> Any:
    """nightly-backup of the database alone: no replica, configuration or secrets backups."""
    return nightly_backup(
        database_url=database_url,
        stanza=stanza,
        storage_block=storage_block,
        key_secret=key_secret,
        replicate=False,
        include_configuration=False,
        include_secrets=False,
        **extra,
    )


def test_backup_to_s3_copy_to_directory_then_validate(
    source_db: str, backup_key: str, s3_endpoint: str, tmp_path: Path
) -> None:
    """The full nightly path: S3 primary, directory replica, a restore that proves it."""
    primary, replica = emulator_storage(s3_endpoint), directory_storage(tmp_path, "replica")
    manifest = nightly_backup(
        database_url=source_db,
        stanza="it-s3",
        storage_block=save(primary),
        replica_block=save(replica),
        key_secret=backup_key,
    )
    assert manifest.row_counts == {"public.media": 20000, "public.schema_migrations": 2}
    assert manifest.key_id == EncryptionKey.parse(Secret.load(backup_key).get()).key_id
    assert manifest.copies == [replica.get_client().location]
    assert manifest.wal_start_lsn is not None
    for storage in (primary, replica):
        logical = [e.manifest.backup_id for e in list_catalog(storage.get_client(), "it-s3", "logical")]
        assert logical == [manifest.backup_id]
    catalog = {e.manifest.kind: e.manifest for e in list_catalog(primary.get_client(), "it-s3")}
    assert set(catalog) == {"logical", "config", "secrets"}
    key = EncryptionKey.parse(Secret.load(backup_key).get())
    config = catalog["config"].objects[0]
    plain = b"".join(decode_chunks(primary.get_client().get_chunks(config.key), key, config.key, config.sha256))
    with tarfile.open(fileobj=io.BytesIO(plain)) as archive:
        names = archive.getnames()
    assert {"prefect.yaml", "release-history.json", "deployments/prometheus/alerts.yml"} <= set(names)
    assert not any(name.startswith("data/") for name in names), "no Prometheus TSDB in a configuration backup"

    record = validate_backup(database_url=source_db, stanza="it-s3", storage_block=save(primary), key_secret=backup_key)
    assert record.verdict is ValidationVerdict.PASSED
    assert record.restore_seconds is not None
    assert record.restore_seconds > 0
    stored = load_validation(primary.get_client(), "it-s3", manifest.backup_id)
    assert stored is not None
    assert stored.verdict is ValidationVerdict.PASSED
    with psycopg.connect(f"{SERVER}/postgres") as conn:
        leftovers = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'restore_check_%'").fetchall()
    assert leftovers == [], "the scratch database must be dropped"


def test_directory_format_with_parallel_jobs_round_trips(source_db: str, backup_key: str, tmp_path: Path) -> None:
    storage = save(directory_storage(tmp_path))
    manifest = database_backup_only(source_db, "it-dir", storage, backup_key, dump_format="directory", jobs=2)
    assert manifest.dump_format == "directory"
    assert len(manifest.objects) >= 3  # toc.dat plus one file per table's data
    record = validate_backup(database_url=source_db, stanza="it-dir", storage_block=storage, key_secret=backup_key)
    assert record.verdict is ValidationVerdict.PASSED


def test_flipped_byte_fails_validation_and_names_the_object(source_db: str, backup_key: str, tmp_path: Path) -> None:
    storage = directory_storage(tmp_path)
    name = save(storage)
    manifest = database_backup_only(source_db, "it-flip", name, backup_key)
    target = Path(storage.path or "") / manifest.objects[0].key
    data = bytearray(target.read_bytes())
    data[HEADER_LENGTH + 10] ^= 0x40
    target.write_bytes(bytes(data))
    with pytest.raises(VerificationError, match=f"{manifest.objects[0].key}: SHA-256"):
        validate_backup(database_url=source_db, stanza="it-flip", storage_block=name, key_secret=backup_key)
    record = load_validation(storage.get_client(), "it-flip", manifest.backup_id)
    assert record is not None
    assert record.verdict is ValidationVerdict.FAILED
    assert manifest.objects[0].key in record.problems[0]


def test_wrong_key_is_named_and_nothing_is_deleted(source_db: str, backup_key: str, tmp_path: Path) -> None:
    storage = directory_storage(tmp_path)
    name = save(storage)
    manifest = database_backup_only(source_db, "it-key", name, backup_key)
    other = f"it-other-key-{uuid.uuid4().hex[:6]}"
    Secret(value=EncryptionKey.generate().encoded()).save(other)
    with pytest.raises(VerificationError, match=f"key id {manifest.key_id}"):
        validate_backup(database_url=source_db, stanza="it-key", storage_block=name, key_secret=other)
    assert backup_ids(storage.get_client(), "it-key") == [manifest.backup_id]
    assert all(storage.get_client().exists(o.key) for o in manifest.objects)


def test_missing_key_fails_before_touching_the_repository(
    source_db: str, tmp_path: Path, prefect_harness: None
) -> None:
    storage = directory_storage(tmp_path)
    with pytest.raises(ConfigError, match="Secret block 'no-such-key' does not exist"):
        nightly_backup(database_url=source_db, stanza="it-nokey", storage_block=save(storage), key_secret="no-such-key")
    assert not (tmp_path / "repo").exists()


def test_unreachable_database_is_retried_then_named(backup_key: str, tmp_path: Path) -> None:
    """A port that accepts and drops connections: four attempts (1 + 3 retries), then a clear failure."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted = []

    def drop_everything() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=drop_everything, daemon=True).start()
    quick = dump_database_task.with_options(retry_delay_seconds=0)

    @flow
    def dump_once() -> None:
        quick(f"postgresql://postgres@127.0.0.1:{port}/medianest", "medianest", backup_key, str(tmp_path), "custom", 1)

    try:
        with pytest.raises(
            DatabaseUnavailableError, match=f"cannot reach PostgreSQL database 'medianest' at 127.0.0.1:{port}"
        ):
            dump_once()
    finally:
        listener.close()
    assert len(accepted) >= 4


def test_second_backup_of_a_stanza_waits_for_the_first(source_db: str, backup_key: str, tmp_path: Path) -> None:
    """While the stanza's lock is held, a backup run waits; once released it completes."""
    storage = directory_storage(tmp_path)
    name = save(storage)
    kwargs: dict[str, Any] = {
        "database_url": source_db,
        "stanza": "it-lock",
        "storage_block": name,
        "key_secret": backup_key,
    }
    from tasks.locks import ensure_lock

    ensure_lock("backup-it-lock")
    outcome: dict[str, object] = {}
    with concurrency("backup-it-lock", occupy=1, strict=True, lease_duration=60):
        worker = threading.Thread(target=lambda: outcome.setdefault("manifest", database_backup_only(**kwargs)))
        worker.start()
        time.sleep(4)
        assert backup_ids(storage.get_client(), "it-lock") == [], "the second run must not start while the lock is held"
    worker.join(120)
    assert backup_ids(storage.get_client(), "it-lock") == [outcome["manifest"].backup_id]  # type: ignore[attr-defined]
    with (
        concurrency("backup-it-lock", occupy=1, strict=True, lease_duration=60),
        pytest.raises(DeliveryError, match="stanza it-lock is busy"),
    ):
        database_backup_only(**kwargs, lock_timeout_seconds=1)


def test_retention_keeps_the_last_good_backup_when_the_newest_is_broken(
    source_db: str, backup_key: str, tmp_path: Path
) -> None:
    storage = directory_storage(tmp_path)
    name = save(storage)
    kwargs: dict[str, Any] = {
        "database_url": source_db,
        "stanza": "it-gfs",
        "storage_block": name,
        "key_secret": backup_key,
    }
    good = database_backup_only(**kwargs)
    validate_backup(database_url=source_db, stanza="it-gfs", storage_block=name, key_secret=backup_key)
    broken = database_backup_only(**kwargs)
    target = Path(storage.path or "") / broken.objects[0].key
    target.write_bytes(target.read_bytes()[:-1])
    with pytest.raises(VerificationError):
        validate_backup(database_url=source_db, stanza="it-gfs", storage_block=name, key_secret=backup_key)

    @flow
    def expire() -> list[tuple[str, str, str]]:
        return apply_retention(storage, "it-gfs", "logical", RetentionPolicy(daily=1, weekly=0, monthly=0), False)

    report = expire()
    assert (broken.backup_id, "delete", "failed validation") in report
    assert backup_ids(storage.get_client(), "it-gfs") == [good.backup_id]


def test_s3_failing_mid_backup_is_retried_and_resumed(backup_key: str, s3_endpoint: str, tmp_path: Path) -> None:
    """The emulator stops answering mid-upload; the store task retries, resumes, and the backup validates."""
    dsn = f"{SERVER}/backup_it_{uuid.uuid4().hex[:8]}"
    create_database(dsn)
    apply_migrations(dsn, discover_migrations(MIGRATIONS))
    try:
        with psycopg.connect(dsn) as conn:  # ~20 MB that compresses poorly: a multipart upload
            conn.execute(
                "CREATE TABLE blobs AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS v "
                "FROM generate_series(1, 400000) g"
            )
        direct = emulator_storage(s3_endpoint)
        with FlakyProxy(s3_endpoint.removeprefix("http://"), failures=0, break_after=2, heal_after=2) as proxy:
            flaky = direct.model_copy(update={"max_attempts": 1})
            assert flaky.credentials is not None
            flaky.credentials = flaky.credentials.model_copy(
                update={"aws_client_parameters": {"endpoint_url": f"http://{proxy.address}"}}
            )
            manifest = database_backup_only(dsn, "it-flaky", save(flaky), backup_key)
        assert proxy.failed >= 1
        assert manifest.objects[0].size > 8 * 1024 * 1024
        part_puts = [p for p in proxy.paths if "partNumber=" in p and p.startswith("PUT")]
        numbers = [int(p.split("partNumber=")[1].split("&")[0]) for p in part_puts]
        assert sorted(numbers) == sorted(set(numbers)), "no part is sent twice after a resume"
        record = validate_backup(database_url=dsn, stanza="it-flaky", storage_block=save(direct), key_secret=backup_key)
        assert record.verdict is ValidationVerdict.PASSED
    finally:
        drop_database(dsn)
