"""Restore verdicts, recovery objectives, PITR proof, and the WAL archiver's push/fetch on a directory."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from medianest_delivery.backup.crypto import EncryptionKey
from medianest_delivery.backup.repository import DirectoryRepository
from medianest_delivery.backup.repospec import RepositorySpec
from medianest_delivery.backup.verdicts import (
    ObjectiveStatus,
    RecoveryObjectives,
    assess_objectives,
    compare_restore,
    target_reached,
)
from medianest_delivery.backup.walarchive import ArchiverConfig, fetch_segment, main, push_segment
from medianest_delivery.errors import VerificationError

T0 = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("name", "expected", "actual", "fp", "problems"),
    [
        ("identical", {"public.media": 3}, {"public.media": 3}, "a", []),
        (
            "row lost",
            {"public.media": 3},
            {"public.media": 2},
            "a",
            ["table public.media has 2 rows after restore, manifest says 3"],
        ),
        (
            "table lost",
            {"public.media": 3},
            {},
            "a",
            ["table public.media is missing after restore (expected 3 rows)"],
        ),
        ("extra table", {}, {"public.x": 0}, "a", ["table public.x appeared after restore but is not in the manifest"]),
        ("schema drift", {}, {}, "b", ["schema fingerprint a… differs from the manifest's b…"]),
    ],
)
def test_compare_restore(
    name: str, expected: dict[str, int], actual: dict[str, int], fp: str, problems: list[str]
) -> None:
    """validate-backup: a restored snapshot matches its manifest exactly."""
    assert compare_restore(expected, actual, fp, "a") == problems, name


@pytest.mark.parametrize(
    ("name", "expected", "actual", "problems"),
    [
        ("commits after the marker", {"media": 3}, {"media": 5}, []),
        ("table created after the marker", {"media": 3}, {"media": 3, "tags": 1}, []),
        (
            "rows lost",
            {"media": 3},
            {"media": 2},
            ["table media has 2 rows after restore, fewer than the 3 at the marker"],
        ),
        ("table lost", {"media": 3}, {}, ["table media is missing after restore (expected 3 rows)"]),
    ],
)
def test_compare_restore_of_a_live_source(
    name: str, expected: dict[str, int], actual: dict[str, int], problems: list[str]
) -> None:
    """dr-drill: the same comparison, where a live database may commit more after the marker but never less."""
    assert compare_restore(expected, actual, None, "fp", live_source=True) == problems, name


@pytest.mark.parametrize(
    ("name", "rto", "rpo", "wal", "statuses"),
    [
        ("both met with WAL", 600, 120, True, ("met", "met")),
        ("RPO missed with WAL", 600, 301, True, ("met", "missed")),
        ("nightly dumps allow a day", 600, 23 * 3600, False, ("met", "met")),
        ("exactly on target meets it", 1800, 300, True, ("met", "met")),
        ("slow restore", 1801, 0, True, ("missed", "met")),
    ],
)
def test_objectives(name: str, rto: float, rpo: float, wal: bool, statuses: tuple[str, str]) -> None:
    report = assess_objectives(rto, rpo, RecoveryObjectives.for_method(wal_archiving=wal))
    assert (report.rto_status, report.rpo_status) == tuple(ObjectiveStatus(s) for s in statuses), name
    assert report.met == (statuses == ("met", "met"))


def test_negative_measurements_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        assess_objectives(-1, 0, RecoveryObjectives())


@pytest.mark.parametrize(
    ("name", "time", "lsn", "replayed", "stop", "last", "reached"),
    [
        (
            "time hit",
            T0,
            None,
            "0/3000000",
            "recovery stopping before commit of transaction 7",
            T0 - dt.timedelta(seconds=1),
            True,
        ),
        ("time: no stop line", T0, None, "0/3000000", None, T0 - dt.timedelta(seconds=1), False),
        (
            "time: replayed past target",
            T0,
            None,
            "0/3000000",
            "recovery stopping after commit",
            T0 + dt.timedelta(seconds=1),
            False,
        ),
        ("lsn reached", None, "0/3000000", "0/3000010", None, None, True),
        ("lsn short", None, "0/3000000", "0/2FFFFFF", None, None, False),
        ("end of archive", None, None, "0/5000000", None, None, True),
    ],
)
def test_target_reached(
    name: str,
    time: dt.datetime | None,
    lsn: str | None,
    replayed: str,
    stop: str | None,
    last: dt.datetime | None,
    reached: bool,
) -> None:
    assert target_reached(time, lsn, replayed, stop, last)[0] is reached, name


@pytest.fixture
def archiver(tmp_path: Path) -> ArchiverConfig:
    key_file = tmp_path / "archiver.key"
    key_file.write_text(EncryptionKey.generate().encoded())
    config = ArchiverConfig(
        "db", RepositorySpec(kind="directory", path=str(tmp_path / "repo")), key_file, tmp_path / "spool"
    )
    config.write(tmp_path / "archiver.json")
    return config


def test_push_is_idempotent_and_fetch_restores_the_bytes(archiver: ArchiverConfig, tmp_path: Path) -> None:
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
    """`check` (run as the cluster user before archive_command is written) fails when the key is unreadable."""
    config = str(tmp_path / "archiver.json")
    assert main(["check", "--config", config]) == 0
    (tmp_path / "archiver.key").unlink()
    assert main(["check", "--config", config]) == 2
    assert main(["check", "--config", str(tmp_path / "missing.json")]) == 2
