"""Pure judgements on restores: does the restored database match, were RTO and RPO met."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from medianest_delivery.backup.walchain import parse_lsn


def compare_restore(
    expected_counts: dict[str, int],
    actual_counts: dict[str, int],
    expected_fingerprint: str | None,
    actual_fingerprint: str,
    *,
    live_source: bool = False,
) -> list[str]:
    """Every difference between what must come back and the restored database, one line each.

    From a backup's snapshot (validate-backup) counts must match exactly. From a live
    database read at a marker and restored to the end of its archive (dr-drill,
    `live_source`), commits after the marker are expected: each table needs at least
    the marker's rows, and tables created after it are not a problem.

    >>> compare_restore({"media": 3}, {"media": 4, "new": 1}, None, "fp", live_source=True)
    []
    >>> compare_restore({"media": 3}, {"media": 2}, None, "fp", live_source=True)
    ['table media has 2 rows after restore, fewer than the 3 at the marker']
    """
    problems = []
    for table in sorted(set(expected_counts) | set(actual_counts)):
        if table not in actual_counts:
            problems.append(f"table {table} is missing after restore (expected {expected_counts[table]} rows)")
        elif table not in expected_counts:
            if not live_source:
                problems.append(f"table {table} appeared after restore but is not in the manifest")
        elif live_source:
            if actual_counts[table] < expected_counts[table]:
                problems.append(
                    f"table {table} has {actual_counts[table]} rows after restore, "
                    f"fewer than the {expected_counts[table]} at the marker"
                )
        elif expected_counts[table] != actual_counts[table]:
            problems.append(
                f"table {table} has {actual_counts[table]} rows after restore, manifest says {expected_counts[table]}"
            )
    if expected_fingerprint is not None and expected_fingerprint != actual_fingerprint:
        problems.append(
            f"schema fingerprint {actual_fingerprint[:16]}… differs from the manifest's {expected_fingerprint[:16]}…"
        )
    return problems


class ObjectiveStatus(enum.StrEnum):
    MET = "met"
    MISSED = "missed"


@dataclass(frozen=True)
class RecoveryObjectives:
    """The strategy's targets: RTO 30 min; RPO 5 min with WAL archiving, 24 h with nightly dumps only."""

    rto_seconds: float = 30 * 60
    rpo_seconds: float = 5 * 60

    @classmethod
    def for_method(cls, wal_archiving: bool) -> RecoveryObjectives:
        return cls(rpo_seconds=5 * 60 if wal_archiving else 24 * 3600)


@dataclass(frozen=True)
class ObjectivesReport:
    rto_seconds: float
    rpo_seconds: float
    rto_status: ObjectiveStatus
    rpo_status: ObjectiveStatus

    @property
    def met(self) -> bool:
        return self.rto_status is ObjectiveStatus.MET and self.rpo_status is ObjectiveStatus.MET


def assess_objectives(rto_seconds: float, rpo_seconds: float, targets: RecoveryObjectives) -> ObjectivesReport:
    """Both measured values against the targets (a value equal to its target meets it)."""
    if rto_seconds < 0 or rpo_seconds < 0:
        raise ValueError(f"RTO and RPO cannot be negative (got {rto_seconds}, {rpo_seconds})")
    return ObjectivesReport(
        rto_seconds,
        rpo_seconds,
        ObjectiveStatus.MET if rto_seconds <= targets.rto_seconds else ObjectiveStatus.MISSED,
        ObjectiveStatus.MET if rpo_seconds <= targets.rpo_seconds else ObjectiveStatus.MISSED,
    )


def target_reached(
    target_time: dt.datetime | None,
    target_lsn: str | None,
    replayed_lsn: str,
    stop_line: str | None,
    last_transaction_at: dt.datetime | None,
) -> tuple[bool, str]:
    """Did replay stop at the requested point? (PostgreSQL's own log line is the evidence.)

    Time target: replay must have stopped on the target (a 'recovery stopping' line) and
    the last transaction it kept must not be later than the target. LSN target: the
    replayed position must have reached it. No target: the end of the archive counts.
    """
    if target_time is not None:
        if stop_line is None:
            return False, f"replay never reached {target_time.isoformat()}: no 'recovery stopping' in the log"
        if last_transaction_at is not None and last_transaction_at > target_time:
            return False, f"a transaction from {last_transaction_at.isoformat()} (after the target) was replayed"
        return True, stop_line
    if target_lsn is not None:
        if parse_lsn(replayed_lsn) < parse_lsn(target_lsn):
            return False, f"replay stopped at {replayed_lsn}, before the target LSN {target_lsn}"
        return True, stop_line or f"replayed to {replayed_lsn} (target {target_lsn})"
    return True, f"replayed the whole archive, to {replayed_lsn}"
