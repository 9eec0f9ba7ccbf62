"""DORA maths on hand-computed histories (pure)."""

from __future__ import annotations

import datetime as dt

import pytest

from medianest_delivery.dora.metrics import Band, Deployment, compute_dora, frequency_band, ratio_band

DAY = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)


def at(hour: float, day: int = 0) -> dt.datetime:
    return DAY + dt.timedelta(days=day, hours=hour)


def dep(
    committed: float | None,
    started: float,
    finished: float,
    *,
    day: int = 0,
    rolled_back: bool = False,
    remediation: bool = False,
    version: str = "1.0.0",
) -> Deployment:
    return Deployment(
        version,
        at(committed, day) if committed is not None else None,
        at(started, day),
        at(finished, day),
        rolled_back,
        remediation,
    )


def test_docstring_example() -> None:
    """The module docstring's worked example (three deploys, one rolled back) gives its stated values and bands."""
    report = compute_dora(
        [dep(9, 9.9, 10), dep(9, 10 + 50 / 60, 11, rolled_back=True), dep(9, 11.9, 12)], DAY, DAY + dt.timedelta(days=1)
    )
    values = {m.name: (m.value, m.band) for m in report.metrics}
    assert values["deployment frequency"] == (3.0, Band.ELITE)
    assert values["lead time for changes"] == (2 * 3600, Band.ELITE)
    assert values["change failure rate"] == (pytest.approx(1 / 3), Band.LOW)
    assert values["time to restore service"] == (pytest.approx(600), Band.ELITE)
    assert values["deployment rework rate"] == (pytest.approx(1 / 3), Band.LOW)
    assert (report.deployments, report.failures) == (3, 1)


def test_empty_window_has_no_times_and_low_frequency() -> None:
    """No deployments: frequency 0 (low), every other metric n/a with no band and no target verdict."""
    report = compute_dora([], DAY, DAY + dt.timedelta(days=7))
    assert [(m.value, m.band, m.meets_target) for m in report.metrics] == [
        (0.0, Band.LOW, False),
        (None, Band.NONE, None),
        (None, Band.NONE, None),
        (None, Band.NONE, None),
        (None, Band.NONE, None),
    ]
    assert report.metric("lead time for changes").display() == "n/a"


def test_single_deploy_in_a_week() -> None:
    """One clean deployment: 1/7 per day is 'high', lead time 30 min meets the 2 h target, nothing failed."""
    report = compute_dora([dep(10, 10.4, 10.5, day=2)], DAY, DAY + dt.timedelta(days=7))
    freq, lead, cfr, ttr, rework = report.metrics
    assert (freq.value, freq.band, freq.meets_target) == (pytest.approx(1 / 7), Band.HIGH, False)
    assert (lead.value, lead.band, lead.meets_target) == (1800, Band.ELITE, True)
    assert (cfr.value, cfr.band, cfr.meets_target) == (0.0, Band.ELITE, True)
    assert (ttr.value, ttr.band) == (None, Band.NONE)
    assert rework.value == 0.0


def test_manual_rollback_counts_as_failure_and_rework() -> None:
    """v2 promoted, then the rollback flow puts v1 back 40 min later: v2 failed, restored in 40 min."""
    history = [
        dep(8, 9, 9.1, version="1.0.0"),
        dep(9, 10, 10.2, version="2.0.0"),
        dep(None, 10.8, 10 + 52 / 60, remediation=True, version="1.0.0"),
    ]
    report = compute_dora(history, DAY, DAY + dt.timedelta(days=1))
    assert report.failures == 1
    assert report.metric("time to restore service").value == pytest.approx(52 * 60)
    assert report.metric("time to restore service").meets_target is False  # 52 min > 30 min target
    assert report.metric("deployment rework rate").value == pytest.approx(1 / 3)
    assert report.metric("lead time for changes").value == pytest.approx(((9.1 - 8) + (10.2 - 9)) / 2 * 3600)


def test_deployments_outside_the_window_are_ignored() -> None:
    """Deployments the day before and the day after the window are not counted."""
    report = compute_dora([dep(0, 1, 2, day=-1), dep(0, 1, 2, day=1)], DAY, DAY + dt.timedelta(days=1))
    assert report.deployments == 0


def test_window_must_have_positive_length() -> None:
    """A window whose end is not after its start is a ValueError."""
    with pytest.raises(ValueError, match="not after its start"):
        compute_dora([], DAY, DAY)


@pytest.mark.parametrize(
    ("per_day", "band"),
    [(2, Band.ELITE), (1, Band.ELITE), (0.2, Band.HIGH), (1 / 7, Band.HIGH), (0.05, Band.MEDIUM), (0.01, Band.LOW)],
)
def test_frequency_bands(per_day: float, band: Band) -> None:
    """Deployments per day map to DORA's bands: daily or more is elite, weekly or more high, monthly or more medium, else low."""
    assert frequency_band(per_day) is band


@pytest.mark.parametrize(
    ("ratio", "band"), [(0.0, Band.ELITE), (0.05, Band.ELITE), (0.08, Band.HIGH), (0.15, Band.MEDIUM), (0.5, Band.LOW)]
)
def test_failure_rate_bands(ratio: float, band: Band) -> None:
    """A ratio at or under the elite limit is elite; each higher limit drops a band."""
    assert ratio_band(ratio, 0.05, 0.10, 0.15) is band


def test_history_events_become_deployments() -> None:
    """deploy-started..promoted pairs by flow run; a rolled-back rollout fails; an older version promoted is remediation."""
    from medianest_delivery.dora.metrics import ReleaseRecord, deployments_from_events

    c = at(8)
    records = [
        ReleaseRecord(at(9), "1.0.0", c, "deploy-started", "r1"),
        ReleaseRecord(at(9.1), "1.0.0", c, "promoted", "r1"),
        ReleaseRecord(at(10), "1.1.0", c, "deploy-started", "r2"),
        ReleaseRecord(at(10.2), "1.1.0", c, "rolled-back", "r2"),
        ReleaseRecord(at(11), "2.0.0", c, "deploy-started", "r3"),
        ReleaseRecord(at(11.1), "2.0.0", c, "promoted", "r3"),
        ReleaseRecord(at(11.5), "1.0.0", c, "deploy-started", "r4"),
        ReleaseRecord(at(11.6), "1.0.0", c, "promoted", "r4"),
        ReleaseRecord(at(12), "2.1.0", c, "approved", "r5"),
    ]
    deployments = deployments_from_events(records)
    assert [(d.version, d.rolled_back, d.remediation) for d in deployments] == [
        ("1.0.0", False, False),
        ("1.1.0", True, False),
        ("2.0.0", False, False),
        ("1.0.0", False, True),
    ]
    assert deployments[1].started_at == at(10)
    report = compute_dora(deployments, DAY, DAY + dt.timedelta(days=1))
    assert report.failures == 2  # 1.1.0 rolled back; 2.0.0 undone by the rollback flow
