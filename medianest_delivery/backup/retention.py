"""Grandfather-father-son retention: which backups to keep, and why (pure).

Worked example, policy 2 daily / 1 weekly / 1 monthly, good backups on
Nov 26, Nov 25, Nov 24 (Tue) and Oct 31:
  daily keeps Nov 26 and Nov 25; weekly keeps the newest of ISO week 48
  (Nov 26, already kept); monthly keeps the newest of November (Nov 26).
  Nov 24 and Oct 31 are deleted: Oct's month is the 2nd month, and the
  policy keeps one. The newest verified backup is kept whatever its age.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetentionPolicy:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    def __post_init__(self) -> None:
        if min(self.daily, self.weekly, self.monthly) < 0 or self.daily + self.weekly + self.monthly == 0:
            raise ValueError("retention keeps a non-negative number per period, and at least one backup in all")


@dataclass(frozen=True)
class BackupSummary:
    backup_id: str
    finished_at: dt.datetime
    verified: bool = False  # a restore validation passed
    broken: bool = False  # a restore validation failed


@dataclass
class RetentionPlan:
    keep: dict[str, list[str]] = field(default_factory=dict)  # backup id -> reasons
    delete: dict[str, str] = field(default_factory=dict)  # backup id -> reason

    def report(self) -> list[tuple[str, str, str]]:
        rows = [(b, "keep", ", ".join(r)) for b, r in self.keep.items()]
        rows += [(b, "delete", r) for b, r in self.delete.items()]
        return sorted(rows)


def _newest_per_period(
    backups: list[BackupSummary], period: Callable[[dt.datetime], Hashable], count: int
) -> list[BackupSummary]:
    chosen: list[BackupSummary] = []
    seen: set[Hashable] = set()
    for backup in backups:  # newest first
        bucket = period(backup.finished_at)
        if bucket in seen:
            continue
        if len(seen) == count:
            break
        seen.add(bucket)
        chosen.append(backup)
    return chosen


def plan_retention(backups: list[BackupSummary], policy: RetentionPolicy) -> RetentionPlan:
    """GFS over the backups that are not known broken; broken ones never fill a slot.

    The newest verified backup is always kept, so a run of broken or
    unvalidated nightlies can never leave the repository without a
    backup known to restore.
    """
    ordered = sorted(backups, key=lambda b: (b.finished_at, b.backup_id), reverse=True)
    usable = [b for b in ordered if not b.broken]
    plan = RetentionPlan()

    def keep(backup: BackupSummary, reason: str) -> None:
        plan.keep.setdefault(backup.backup_id, []).append(reason)

    for backup in _newest_per_period(usable, lambda t: t.astimezone(dt.UTC).date(), policy.daily):
        keep(backup, "daily")
    for backup in _newest_per_period(usable, lambda t: t.astimezone(dt.UTC).isocalendar()[:2], policy.weekly):
        keep(backup, "weekly")
    for backup in _newest_per_period(usable, lambda t: (t.astimezone(dt.UTC).year, t.month), policy.monthly):
        keep(backup, "monthly")
    newest_verified = next((b for b in ordered if b.verified and not b.broken), None)
    if newest_verified is not None:
        keep(newest_verified, "newest verified")
    if not plan.keep and ordered:
        keep(ordered[0], "only backups left are broken: newest kept for investigation")
    for backup in ordered:
        if backup.backup_id not in plan.keep:
            plan.delete[backup.backup_id] = "failed validation" if backup.broken else "outside retention"
    return plan
