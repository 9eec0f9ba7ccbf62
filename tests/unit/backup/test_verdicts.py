"""Restore verdicts, recovery objectives and PITR proof: pure decisions, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.backup.verdicts import (
    ObjectiveStatus,
    RecoveryObjectives,
    assess_objectives,
    compare_restore,
    target_reached,
)

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
    """Measured RTO and RPO are each met or missed against the method's targets; `met` needs both."""
    report = assess_objectives(rto, rpo, RecoveryObjectives.for_method(wal_archiving=wal))
    assert (report.rto_status, report.rpo_status) == tuple(ObjectiveStatus(s) for s in statuses), name
    assert report.met == (statuses == ("met", "met"))


def test_negative_measurements_are_rejected() -> None:
    """A negative RTO or RPO is a ValueError, not a trivially met objective."""
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
    """A time target needs a stop line and nothing replayed after it; an LSN target needs replay to reach it."""
    assert target_reached(time, lsn, replayed, stop, last)[0] is reached, name
