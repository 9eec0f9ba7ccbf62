"""The WAL archiver's push, fetch and check, against a directory repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.repository import DirectoryRepository
from medianest_delivery.backup.repospec import RepositorySpec
from medianest_delivery.backup.walarchive import ArchiverConfig, fetch_segment, main, push_segment
from medianest_delivery.errors import VerificationError


@pytest.fixture
def archiver(tmp_path: Path) -> ArchiverConfig:
    """An archiver config for stanza `db` with a fresh key, written to tmp_path/archiver.json."""
    key_file = tmp_path / "archiver.key"
    key_file.write_text(EncryptionKey.generate().encoded())
    config = ArchiverConfig(
        "db", RepositorySpec(kind="directory", path=str(tmp_path / "repo")), key_file, tmp_path / "spool"
    )
    config.write(tmp_path / "archiver.json")
    return config


def test_push_is_idempotent_and_fetch_restores_the_bytes(archiver: ArchiverConfig, tmp_path: Path) -> None:
    """Pushing a segment twice stores it once; fetch returns its exact bytes, or False when it is not archived."""
    repository = DirectoryRepository(Path(archiver.repository.path))
    segment = tmp_path / "000000010000000000000003"
    segment.write_bytes(os.urandom(64 * 1024))
    first = push_segment(archiver, repository, segment)
    assert push_segment(archiver, repository, segment) == first  # PostgreSQL may retry after a crash
    assert first.startswith("db/wal/0000000100000000/000000010000000000000003-")
    restored = tmp_path / "restored"
    assert fetch_segment(archiver, repository, "000000010000000000000003", restored)
    assert restored.read_bytes() == segment.read_bytes()
    assert not fetch_segment(archiver, repository, "000000010000000000000004", tmp_path / "none")


def test_push_refuses_different_content_under_an_archived_name(archiver: ArchiverConfig, tmp_path: Path) -> None:
    """A segment name already archived with other bytes is a VerificationError, never an overwrite."""
    repository = DirectoryRepository(Path(archiver.repository.path))
    segment = tmp_path / "000000010000000000000003"
    segment.write_bytes(b"a" * 1000)
    push_segment(archiver, repository, segment)
    segment.write_bytes(b"b" * 1000)
    with pytest.raises(VerificationError, match="already archived with different content"):
        push_segment(archiver, repository, segment)


def test_cli_exit_codes_are_what_postgresql_expects(archiver: ArchiverConfig, tmp_path: Path) -> None:
    """0 = stored/restored, 1 = not in the archive (normal at recovery end), 2 = failure (PostgreSQL retries)."""
    config = str(tmp_path / "archiver.json")
    segment = tmp_path / "000000010000000000000009"
    segment.write_bytes(b"wal" * 100)
    assert main(["push", "--config", config, str(segment)]) == 0
    assert main(["fetch", "--config", config, "000000010000000000000009", str(tmp_path / "out")]) == 0
    assert main(["fetch", "--config", config, "00000001000000000000000A", str(tmp_path / "out2")]) == 1
    (tmp_path / "archiver.key").unlink()
    fresh = tmp_path / "00000001000000000000000A"
    fresh.write_bytes(b"new" * 100)
    assert main(["push", "--config", config, str(fresh)]) == 2


def test_check_proves_config_key_and_repository(archiver: ArchiverConfig, tmp_path: Path) -> None:
    """`check` (run as the cluster user before archive_command is written) fails when the key or config is missing."""
    config = str(tmp_path / "archiver.json")
    assert main(["check", "--config", config]) == 0
    (tmp_path / "archiver.key").unlink()
    assert main(["check", "--config", config]) == 2
    assert main(["check", "--config", str(tmp_path / "missing.json")]) == 2
