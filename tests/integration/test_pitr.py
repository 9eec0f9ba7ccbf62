"""Continuous archiving and PITR on a real PostgreSQL 15 cluster with archive_command = our archiver."""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from prefect.blocks.system import Secret

from blocks.backup import BackupStorage
from flows.pitr import base_backup, dr_drill, pitr_restore, verify_repository_flow
from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.manifest import BackupKind
from medianest_delivery.backup.pgcluster import LocalCluster, free_port
from medianest_delivery.backup.physical import archiving_settings, wait_for_segment, write_archiver_config
from medianest_delivery.backup.walarchive import SUFFIX
from medianest_delivery.errors import VerificationError
from medianest_delivery.rollout.migrations import apply_migrations, discover_migrations
from medianest_delivery.settings import StackSettings
from tasks.pitr import remove_scratch_cluster

pytestmark = pytest.mark.integration
MIGRATIONS = Path(__file__).resolve().parents[2] / "examples" / "medianest" / "migrations"
STANZA = "it-cluster"


class Archived:
    def __init__(self, cluster: LocalCluster, storage: BackupStorage, storage_name: str, key_secret: str) -> None:
        self.cluster, self.storage, self.storage_name, self.key_secret = cluster, storage, storage_name, key_secret

    @property
    def repo(self) -> Path:
        return Path(self.storage.path or "")

    def execute(self, query: str, dbname: str = "medianest") -> object:
        with psycopg.connect(self.cluster.dsn(dbname), autocommit=True) as conn:
            cursor = conn.execute(query.encode())
            row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None


@pytest.fixture(scope="module")
def archived(prefect_harness: None) -> Iterator[Archived]:
    """An initdb'd cluster archiving every WAL segment into a directory repository, with the app's schema."""
    base = StackSettings().clusters_dir / f"it-{uuid.uuid4().hex[:8]}"
    key = EncryptionKey.generate()
    key_secret = f"it-pitr-key-{uuid.uuid4().hex[:6]}"
    Secret(value=key.encoded()).save(key_secret)
    storage = BackupStorage(kind="directory", path=str(base / "repo"))
    storage_name = f"it-pitr-{uuid.uuid4().hex[:6]}"
    storage.save(storage_name)
    config = write_archiver_config(base / "archiver", STANZA, storage.spec(), key)
    cluster = LocalCluster(base / "data", free_port())
    cluster.initdb()
    cluster.configure(archiving_settings(config))
    cluster.start()
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE medianest")
    apply_migrations(cluster.dsn("medianest"), discover_migrations(MIGRATIONS))
    with psycopg.connect(cluster.dsn("medianest"), autocommit=True) as conn:
        conn.execute("INSERT INTO media (title, kind) SELECT 'film ' || g, 'movie' FROM generate_series(1, 5000) g")
    try:
        yield Archived(cluster, storage, storage_name, key_secret)
    finally:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


def test_base_backup_then_restore_to_a_point_in_time(archived: Archived) -> None:
    """Rows committed before the target come back; the row committed after it does not."""
    manifest = base_backup(
        cluster_dsn=archived.cluster.dsn(),
        stanza=STANZA,
        storage_block=archived.storage_name,
        key_secret=archived.key_secret,
    )
    assert manifest.kind is BackupKind.BASE
    assert manifest.wal_start_lsn is not None
    archived.execute("INSERT INTO media (title, kind) VALUES ('before-target', 'movie')")
    time.sleep(0.3)
    target = archived.execute("SELECT now()")
    time.sleep(0.3)
    archived.execute("INSERT INTO media (title, kind) VALUES ('after-target', 'movie')")
    assert isinstance(target, dt.datetime)
    segment = archived.execute("SELECT pg_walfile_name(pg_switch_wal())", "postgres")
    wait_for_segment(archived.storage.get_client(), STANZA, str(segment))

    result = pitr_restore(
        stanza=STANZA,
        target_time=target.isoformat(),
        storage_block=archived.storage_name,
        key_secret=archived.key_secret,
        keep_running=True,
    )
    try:
        restored = f"postgresql://postgres@127.0.0.1:{result['port']}/medianest"
        with psycopg.connect(restored) as conn:
            titles = {r[0] for r in conn.execute("SELECT title FROM media WHERE title LIKE '%target'").fetchall()}
            total = conn.execute("SELECT count(*) FROM media").fetchone()
        assert titles == {"before-target"}
        assert total == (5001,)
        assert result["evidence"].startswith("recovery stopping before commit")
    finally:
        remove_scratch_cluster.fn(result["data_dir"], result["port"])  # cluster, archiver config and key file
    assert not Path(result["data_dir"]).parent.exists()


def test_target_beyond_the_archive_is_refused(archived: Archived) -> None:
    """A target later than anything archived must fail, never promote a cluster that stopped short."""
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    with pytest.raises(VerificationError, match="archive ends before the recovery target"):
        pitr_restore(
            stanza=STANZA,
            target_time=future,
            storage_block=archived.storage_name,
            key_secret=archived.key_secret,
            keep_running=False,
        )


def test_dr_drill_measures_rto_and_rpo_and_checks_the_data(archived: Archived) -> None:
    outcome = dr_drill(
        stanza=STANZA,
        cluster_dsn=archived.cluster.dsn(),
        database="medianest",
        storage_block=archived.storage_name,
        key_secret=archived.key_secret,
    )
    assert outcome["problems"] == []
    assert outcome["met"] is True
    assert 0 < outcome["rto_seconds"] < 30 * 60
    assert 0 <= outcome["rpo_seconds"] < 5 * 60


def test_verify_finds_a_missing_segment_and_a_corrupt_one(archived: Archived) -> None:
    """verify passes on the intact repository, then names a gap and a corrupted WAL object."""
    verify_repository_flow(
        stanza=STANZA,
        cluster_dsn=archived.cluster.dsn(),
        storage_block=archived.storage_name,
        key_secret=archived.key_secret,
    )
    for _ in range(3):  # three fresh segments, so one can go missing from the middle
        archived.execute("INSERT INTO media (title, kind) VALUES ('more', 'movie')")
        archived.execute("SELECT pg_switch_wal()", "postgres")
    time.sleep(3)
    wal = sorted(p for p in archived.repo.rglob(f"*{SUFFIX}") if "/wal/" in str(p) and "." not in p.name.split("-")[0])
    missing, corrupt = wal[-2], wal[-3]
    missing.unlink()
    data = bytearray(corrupt.read_bytes())
    data[60] ^= 0x01
    corrupt.write_bytes(bytes(data))
    with pytest.raises(VerificationError) as failure:
        verify_repository_flow(stanza=STANZA, storage_block=archived.storage_name, key_secret=archived.key_secret)
    message = str(failure.value)
    assert missing.name.split("-")[0] in message
    assert "segment(s) missing" in message
    assert corrupt.name in message
