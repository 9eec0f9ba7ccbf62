"""GFS retention of backups: which to keep and why, table-driven."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.backup.retention import BackupSummary, RetentionPolicy, plan_retention

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
    """The plan keeps exactly the expected backups and deletes every other one."""
    plan = plan_retention(backups, policy)
    assert set(plan.keep) == kept, name
    assert set(plan.delete) == {b.backup_id for b in backups} - kept, name


def test_retention_report_says_why() -> None:
    """Each report row names the backup, keep or delete, and the reason (every rule that kept it)."""
    plan = plan_retention(
        [_b("2026-11-26T02:00", broken=True), _b("2026-11-25T02:00", verified=True)], RetentionPolicy(1, 1, 1)
    )
    assert ("b-2026-11-26T02:00", "delete", "failed validation") in plan.report()
    assert ("b-2026-11-25T02:00", "keep", "daily, weekly, monthly, newest verified") in plan.report()


def test_policy_rejects_keeping_nothing() -> None:
    """A policy of zero daily, weekly and monthly backups is refused."""
    with pytest.raises(ValueError, match="at least one"):
        RetentionPolicy(0, 0, 0)
