"""Pure judgements on restores: does the restored database match, were RTO and RPO met."""

from __future__ import annotations

import enum
from dataclasses import dataclass


def compare_restore(
    expected_counts: dict[str, int],
    actual_counts: dict[str, int],
    expected_fingerprint: str | None,
    actual_fingerprint: str,
) -> list[str]:
    """Every difference between the manifest and the restored database, one line each."""
    problems = []
    for table in sorted(set(expected_counts) | set(actual_counts)):
        if table not in actual_counts:
            problems.append(f"table {table} is missing after restore (manifest: {expected_counts[table]} rows)")
        elif table not in expected_counts:
            problems.append(f"table {table} appeared after restore but is not in the manifest")
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
