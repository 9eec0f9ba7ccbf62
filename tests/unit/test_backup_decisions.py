"""Pure backup decisions: GFS retention, WAL names and gaps, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.backup.retention import BackupSummary, RetentionPolicy, plan_retention
from medianest_delivery.backup.walchain import (
    Segment,
    expired_segments,
    find_gaps,
    missing_for_recovery,
    parse_lsn,
    parse_segment,
    segment_of,
)

UTC = dt.UTC


def _b(day: str, *, verified: bool = False, broken: bool = False) -> BackupSummary:
    when = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    return BackupSummary(f"b-{day}", when, verified, broken)


@pytest.mark.parametrize(
    ("name", "backups", "policy", "kept"),
    [
        ("empty", [], RetentionPolicy(), set()),
        (
            "docstring example",
            [_b("2026-11-26T02:00"), _b("2026-11-25T02:00"), _b("2026-11-24T02:00"), _b("2026-10-31T02:00")],
            RetentionPolicy(daily=2, weekly=1, monthly=1),
            {"b-2026-11-26T02:00", "b-2026-11-25T02:00"},
        ),
        (
            "two a day: newest of the day kept",
            [_b("2026-11-26T02:00"), _b("2026-11-26T14:00"), _b("2026-11-25T02:00")],
            RetentionPolicy(daily=7, weekly=0, monthly=0),
            {"b-2026-11-26T14:00", "b-2026-11-25T02:00"},
        ),
        (
            "monthly reaches back a year",
            [_b(f"2026-{m:02d}-15T02:00") for m in range(1, 12)],
            RetentionPolicy(daily=1, weekly=1, monthly=3),
            {"b-2026-11-15T02:00", "b-2026-10-15T02:00", "b-2026-09-15T02:00"},
        ),
        (
            "broken newest keeps the last good one",
            [_b("2026-11-26T02:00", broken=True), _b("2026-11-25T02:00", verified=True), _b("2026-11-24T02:00")],
            RetentionPolicy(daily=1, weekly=0, monthly=0),
            {"b-2026-11-25T02:00"},
        ),
        (
            "old verified backup survives beyond the policy",
            [_b("2026-11-26T02:00"), _b("2026-11-25T02:00"), _b("2026-01-01T02:00", verified=True)],
            RetentionPolicy(daily=1, weekly=0, monthly=0),
            {"b-2026-11-26T02:00", "b-2026-01-01T02:00"},
        ),
        (
            "only broken backups: newest kept for investigation",
            [_b("2026-11-26T02:00", broken=True), _b("2026-11-25T02:00", broken=True)],
            RetentionPolicy(),
            {"b-2026-11-26T02:00"},
        ),
    ],
)
def test_gfs_retention(name: str, backups: list[BackupSummary], policy: RetentionPolicy, kept: set[str]) -> None:
    plan = plan_retention(backups, policy)
    assert set(plan.keep) == kept, name
    assert set(plan.delete) == {b.backup_id for b in backups} - kept, name


def test_retention_report_says_why() -> None:
    plan = plan_retention(
        [_b("2026-11-26T02:00", broken=True), _b("2026-11-25T02:00", verified=True)], RetentionPolicy(1, 1, 1)
    )
    assert ("b-2026-11-26T02:00", "delete", "failed validation") in plan.report()
    assert ("b-2026-11-25T02:00", "keep", "daily, weekly, monthly, newest verified") in plan.report()


def test_policy_rejects_keeping_nothing() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RetentionPolicy(0, 0, 0)


@pytest.mark.parametrize(
    ("lsn", "timeline", "segment"),
    [
        ("0/3000028", 1, "000000010000000000000003"),
        ("0/FFFFFFFF", 1, "0000000100000000000000FF"),
        ("1/0", 2, "000000020000000100000000"),
        ("16/B374D848", 3, "0000000300000016000000B3"),
    ],
)
def test_lsn_to_segment_name(lsn: str, timeline: int, segment: str) -> None:
    assert segment_of(lsn, timeline).name() == segment
    parsed = parse_segment(segment)
    assert parsed is not None
    assert parsed.timeline == timeline


@pytest.mark.parametrize("bad", ["3000028", "0/XYZ", ""])
def test_bad_lsn_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match="LSN"):
        parse_lsn(bad)


def test_history_and_backup_files_are_not_segments() -> None:
    assert parse_segment("00000002.history") is None
    assert parse_segment("000000010000000000000002.00000028.backup") is None


def test_gaps_and_missing_segments() -> None:
    names = [
        "000000010000000000000001",
        "000000010000000000000002",
        "000000010000000000000005",
        "00000002.history",
        "000000020000000000000005",
    ]
    gaps = find_gaps(names)
    assert [(g.timeline, g.first_missing, g.last_missing, g.count) for g in gaps] == [
        (1, "000000010000000000000003", "000000010000000000000004", 2)
    ]
    start, end = Segment(1, 2), Segment(1, 6)
    assert missing_for_recovery(names, start, end) == [
        "000000010000000000000003",
        "000000010000000000000004",
        "000000010000000000000006",
    ]
    assert expired_segments(names, Segment(1, 2)) == ["000000010000000000000001"]
