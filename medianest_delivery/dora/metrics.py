"""DORA's four keys and deployment rework rate, from release events (pure).

Definitions (after Google's fourkeys: medians, not means, for the two times):

- deployment: a release that reached production traffic (promoted, or rolled
  back after it took traffic).
- deployment frequency: deployments per day over the window; band by how often
  (elite: at least daily, high: at least weekly, medium: at least monthly).
- lead time for changes: commit time to promotion in production, median.
- change failure rate: failed deployments / deployments, where a deployment
  failed if it was rolled back automatically, or a later deployment put an
  older version back (a manual rollback).
- time to restore service: from the failed deployment taking traffic to the
  service running a good version again, median.
- deployment rework rate (DORA 2024): deployments made to remediate a failure
  (a rollback, or the next deployment within 24 h of a failure) / deployments.

Worked example: commits at 09:00, deployments promoted at 10:00 and 12:00 and
one rolled back at 11:00 (taking traffic at 10:50) in a 1-day window: frequency
3/day (elite), lead time median of 1 h and 3 h = 2 h (elite), change failure
rate 1/3 (low), time to restore 10 min (elite), rework 1/3 (the 12:00
deployment came within 24 h of the failure).
"""

from __future__ import annotations

import datetime as dt
import enum
import statistics
from dataclasses import dataclass, field


class Band(enum.StrEnum):
    ELITE = "elite"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "no data"


@dataclass(frozen=True)
class Deployment:
    """One release that reached production traffic."""

    version: str
    committed_at: dt.datetime | None
    started_at: dt.datetime  # traffic began (deploy-started)
    finished_at: dt.datetime  # promoted, or rolled back
    rolled_back: bool = False  # automatic rollback: the release itself failed
    remediation: bool = False  # made to undo a failure (the rollback flow)


@dataclass(frozen=True)
class Targets:
    """The strategy's success metrics."""

    deploys_per_day: float = 1.0
    lead_time: dt.timedelta = dt.timedelta(hours=2)
    change_failure_rate: float = 0.05
    time_to_restore: dt.timedelta = dt.timedelta(minutes=30)
    rework_rate: float = 0.05


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None  # per day, seconds, or a ratio
    unit: str
    band: Band
    target: float
    meets_target: bool | None

    def display(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "seconds":
            return _duration(self.value)
        if self.unit == "ratio":
            return f"{self.value:.0%}"
        return f"{self.value:.2f}/day"


@dataclass
class DoraReport:
    window_start: dt.datetime
    window_end: dt.datetime
    deployments: int
    failures: int
    metrics: list[Metric] = field(default_factory=list)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def frequency_band(per_day: float) -> Band:
    if per_day >= 1:
        return Band.ELITE
    if per_day >= 1 / 7:
        return Band.HIGH
    if per_day >= 1 / 30:
        return Band.MEDIUM
    return Band.LOW


def duration_band(seconds: float | None, elite: dt.timedelta, high: dt.timedelta, medium: dt.timedelta) -> Band:
    if seconds is None:
        return Band.NONE
    if seconds < elite.total_seconds():
        return Band.ELITE
    if seconds < high.total_seconds():
        return Band.HIGH
    if seconds < medium.total_seconds():
        return Band.MEDIUM
    return Band.LOW


def ratio_band(ratio: float | None, elite: float, high: float, medium: float) -> Band:
    if ratio is None:
        return Band.NONE
    if ratio <= elite:
        return Band.ELITE
    if ratio <= high:
        return Band.HIGH
    if ratio <= medium:
        return Band.MEDIUM
    return Band.LOW


def failed_deployments(deployments: list[Deployment]) -> dict[int, dt.datetime]:
    """Index of each failed deployment → when service was good again."""
    ordered = sorted(deployments, key=lambda d: d.finished_at)
    failed: dict[int, dt.datetime] = {}
    for index, deployment in enumerate(ordered):
        if deployment.rolled_back:
            failed[index] = deployment.finished_at  # the automatic rollback restored the stable version
            continue
        later = ordered[index + 1 :]
        undo = next((d for d in later if d.remediation), None)
        next_deploy = later[0] if later else None
        if undo is not None and undo is next_deploy:
            failed[index] = undo.finished_at
    return failed


def compute_dora(
    deployments: list[Deployment],
    window_start: dt.datetime,
    window_end: dt.datetime,
    targets: Targets | None = None,
) -> DoraReport:
    """The five metrics over deployments that finished inside [window_start, window_end)."""
    if window_end <= window_start:
        raise ValueError(f"window end {window_end.isoformat()} is not after its start {window_start.isoformat()}")
    goals = targets or Targets()
    inside = sorted((d for d in deployments if window_start <= d.finished_at < window_end), key=lambda d: d.finished_at)
    days = (window_end - window_start).total_seconds() / 86400
    failed = failed_deployments(inside)
    count = len(inside)

    per_day = count / days
    lead_times = [
        (d.finished_at - d.committed_at).total_seconds()
        for d in inside
        if d.committed_at is not None and not d.rolled_back and not d.remediation
    ]
    lead = statistics.median(lead_times) if lead_times else None
    cfr = len(failed) / count if count else None
    restores = [(failed[i] - inside[i].started_at).total_seconds() for i in failed]
    restore = statistics.median(restores) if restores else None
    rework = 0
    for index, deployment in enumerate(inside):
        after_failure = any(j < index and deployment.started_at - failed[j] <= dt.timedelta(hours=24) for j in failed)
        if deployment.remediation or (after_failure and index not in failed and not deployment.rolled_back):
            rework += 1
    rework_rate = rework / count if count else None

    hour, day, week, month = (dt.timedelta(hours=h) for h in (1, 24, 24 * 7, 24 * 30))
    metrics = [
        Metric(
            "deployment frequency",
            per_day,
            "per day",
            frequency_band(per_day) if count else Band.LOW,
            goals.deploys_per_day,
            per_day >= goals.deploys_per_day,
        ),
        Metric(
            "lead time for changes",
            lead,
            "seconds",
            duration_band(lead, day, week, month),
            goals.lead_time.total_seconds(),
            None if lead is None else lead <= goals.lead_time.total_seconds(),
        ),
        Metric(
            "change failure rate",
            cfr,
            "ratio",
            ratio_band(cfr, 0.05, 0.10, 0.15),
            goals.change_failure_rate,
            None if cfr is None else cfr <= goals.change_failure_rate,
        ),
        Metric(
            "time to restore service",
            restore,
            "seconds",
            duration_band(restore, hour, day, week),
            goals.time_to_restore.total_seconds(),
            None if restore is None else restore <= goals.time_to_restore.total_seconds(),
        ),
        Metric(
            "deployment rework rate",
            rework_rate,
            "ratio",
            ratio_band(rework_rate, 0.05, 0.10, 0.20),
            goals.rework_rate,
            None if rework_rate is None else rework_rate <= goals.rework_rate,
        ),
    ]
    return DoraReport(window_start, window_end, count, len(failed), metrics)


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.lstrip("v").split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class ReleaseRecord:
    """The fields of a release-history event the DORA maths needs."""

    at: dt.datetime
    version: str
    commit_time: dt.datetime | None
    event: str
    flow_run_id: str | None


def deployments_from_events(records: list[ReleaseRecord]) -> list[Deployment]:
    """One Deployment per production rollout that ended promoted or rolled back.

    A promotion of a version older than the one running is the rollback flow
    putting a good release back: it is remediation, and it ends the failure of
    the release it replaced.
    """
    started: dict[str | None, dt.datetime] = {}
    running: str | None = None
    deployments = []
    for record in sorted(records, key=lambda r: r.at):
        if record.event == "deploy-started":
            started[record.flow_run_id] = record.at
        elif record.event in ("promoted", "rolled-back"):
            remediation = (
                record.event == "promoted"
                and running is not None
                and _version_key(record.version) < _version_key(running)
            )
            deployments.append(
                Deployment(
                    version=record.version,
                    committed_at=record.commit_time,
                    started_at=started.pop(record.flow_run_id, record.at),
                    finished_at=record.at,
                    rolled_back=record.event == "rolled-back",
                    remediation=remediation,
                )
            )
            if record.event == "promoted":
                running = record.version
    return deployments
