"""Canary judgement: measurements in, a phase and the next action out. Pure functions.

Like Argo Rollouts' analysis, a failed or empty metric query is data (a
measurement in phase ERROR), never an exception, and never counts as a pass.
Evidence accumulates over the whole step (see `evidence`). The absolute
latency criterion is a sequential test on the share of requests slower than
the limit, read from the request histogram, so a look every few seconds does
not inflate false rollbacks and one cold request cannot fail a release. The
canary is also compared with the stable version on the same window:
Mann-Whitney U on the latency time series (as Kayenta does) and Fisher's exact
test on error counts. A canary that fails every request is rejected after a
handful of requests, without waiting for a minimum sample or a full interval.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy import stats

from medianest_delivery.rollout.evidence import BinomialSPRT, SequentialDecision, SlowRequests

# "p95 below the limit" is "fewer than 5% of requests slower than the limit".
P95_SLOW_SHARE = 0.05


class Phase(enum.StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class Action(enum.StrEnum):
    NEXT_STEP = "next-step"
    WAIT = "wait"
    ROLLBACK = "rollback"
    FREEZE = "freeze"


@dataclass(frozen=True)
class Measurement:
    metric: str
    phase: Phase
    value: float | None
    threshold: str
    query: str = ""
    message: str = ""


@dataclass(frozen=True)
class CanaryThresholds:
    """The strategy document's criteria plus the statistical settings."""

    max_error_rate: float = 0.001  # canary error rate below 0.1%
    max_p95_seconds: float = 0.2  # canary p95 below 200 ms
    min_requests: int = 50  # before a step may pass
    alpha: float = 0.01  # significance level of both statistical tests
    latency_tolerance: float = 0.10  # canary median may exceed stable's by 10% before it counts
    min_failure_errors: int = 3  # errors needed before a failure can be declared early
    max_consecutive_errors: int = 3  # analysis errors in a row before rolling back
    max_inconclusive: int = 10  # waits per step before giving up
    # The latency test: a canary with this share of requests over max_p95_seconds (its p80 over the
    # limit) is caught with probability 1 - missed_regression_rate; one at exactly 5% (its p95 at the
    # limit) is rolled back with probability at most alpha, however often the step is looked at.
    slow_share_alarm: float = 0.20
    missed_regression_rate: float = 0.05
    # A replica's first seconds of traffic are its cold start: left out of the latency test (not the errors).
    warmup_seconds: float = 3.0

    def __post_init__(self) -> None:
        self.latency_test()  # names a bad combination when the thresholds are built, not mid-rollout
        if self.warmup_seconds < 0:
            raise ValueError(f"warmup_seconds {self.warmup_seconds} must be >= 0")

    def latency_test(self) -> BinomialSPRT:
        return BinomialSPRT(P95_SLOW_SHARE, self.slow_share_alarm, self.alpha, self.missed_regression_rate)


@dataclass(frozen=True)
class SliceCounts:
    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class StepObservation:
    """What the metrics provider returned for one analysis of one step.

    ``None`` means the query failed or returned no data.
    """

    canary: SliceCounts | None
    stable: SliceCounts | None
    canary_p95_seconds: float | None
    canary_latency_series: Sequence[float] | None
    stable_latency_series: Sequence[float] | None
    critical_alerts: Sequence[str] | None
    queries: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # What clients got from the router (HAProxy's own 503s included); None when not judged.
    router: SliceCounts | None = None
    # A monitoring window after promotion: nothing to compare with, absolute criteria only.
    absolute_only: bool = False
    # The canary's requests over the latency limit since the step began (histogram buckets).
    slow_requests: SlowRequests | None = None


@dataclass(frozen=True)
class StepDecision:
    phase: Phase
    measurements: list[Measurement]

    @property
    def reasons(self) -> list[str]:
        return [f"{m.metric}: {m.message}" for m in self.measurements if m.phase in (Phase.FAILED, Phase.ERROR)]


def _error(metric: str, observation: StepObservation, threshold: str) -> Measurement:
    reason = observation.errors.get(metric, "no data")
    return Measurement(metric, Phase.ERROR, None, threshold, observation.queries.get(metric, ""), reason)


def measure_error_rate(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    threshold = f"< {t.max_error_rate:.4%}"
    if obs.canary is None:
        return _error("error-rate", obs, threshold)
    rate = obs.canary.error_rate
    query = obs.queries.get("error-rate", "")
    if obs.canary.errors >= t.min_failure_errors and rate >= t.max_error_rate:
        return Measurement(
            "error-rate", Phase.FAILED, rate, threshold, query, f"{obs.canary.errors}/{obs.canary.requests} failed"
        )
    if obs.canary.requests < t.min_requests:
        return Measurement(
            "error-rate",
            Phase.INCONCLUSIVE,
            rate,
            threshold,
            query,
            f"{obs.canary.requests} < {t.min_requests} requests",
        )
    phase = Phase.PASSED if rate < t.max_error_rate else Phase.FAILED
    return Measurement("error-rate", phase, rate, threshold, query, f"{obs.canary.errors}/{obs.canary.requests} failed")


def measure_error_comparison(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """Fisher's exact test: are canary errors more frequent than stable's on the same window?"""
    threshold = f"p >= {t.alpha}"
    if obs.canary is None or obs.stable is None:
        return _error("error-vs-stable", obs, threshold)
    query = obs.queries.get("error-rate", "")
    c, s = obs.canary, obs.stable
    if c.errors > c.requests or s.errors > s.requests:
        message = f"more errors than requests (canary {c.errors}/{c.requests}, stable {s.errors}/{s.requests})"
        return Measurement("error-vs-stable", Phase.ERROR, None, threshold, query, message)
    if c.requests == 0 or s.requests == 0:
        return Measurement("error-vs-stable", Phase.INCONCLUSIVE, None, threshold, query, "no traffic on one side")
    table = [[c.errors, c.requests - c.errors], [s.errors, s.requests - s.errors]]
    p_value = float(stats.fisher_exact(table, alternative="greater").pvalue)
    if p_value < t.alpha and c.errors >= t.min_failure_errors:
        message = f"canary {c.error_rate:.2%} vs stable {s.error_rate:.2%}, p={p_value:.2g}"
        return Measurement("error-vs-stable", Phase.FAILED, p_value, threshold, query, message)
    if c.requests < t.min_requests:
        return Measurement("error-vs-stable", Phase.INCONCLUSIVE, p_value, threshold, query, "too few canary requests")
    return Measurement("error-vs-stable", Phase.PASSED, p_value, threshold, query, f"p={p_value:.2g}")


def measure_p95(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """The absolute latency criterion as a sequential test on the share of slow requests.

    The p95 estimate is shown; the verdict comes from the counts, so it needs
    evidence in both directions: a few slow requests among many fast ones wait,
    a canary that is slow throughout fails after a handful of requests.
    """
    threshold = (
        f"< {t.max_p95_seconds * 1000:.0f} ms (SPRT: {P95_SLOW_SHARE:.0%} vs {t.slow_share_alarm:.0%} slow,"
        f" alpha {t.alpha:g}, beta {t.missed_regression_rate:g})"
    )
    query = obs.queries.get("p95-latency", "")
    slow = obs.slow_requests
    p95 = (
        obs.canary_p95_seconds if obs.canary_p95_seconds is not None and math.isfinite(obs.canary_p95_seconds) else None
    )
    if slow is None or "p95-latency" in obs.errors:
        return _error("p95-latency", obs, threshold)
    if slow.requests == 0:
        message = f"{slow.excluded_warmup} requests, all in warm-up" if slow.excluded_warmup else "no requests yet"
        return Measurement("p95-latency", Phase.INCONCLUSIVE, p95, threshold, query, message)
    test = t.latency_test()
    if not 0 <= slow.slow <= slow.requests:
        return Measurement(
            "p95-latency", Phase.ERROR, p95, threshold, query, f"{slow.slow} slow of {slow.requests}: counters disagree"
        )
    llr = test.log_likelihood_ratio(slow.requests, slow.slow)
    decision = test.decide(slow.requests, slow.slow)
    estimate = f"p95 ~{p95 * 1000:.0f} ms, " if p95 is not None else ""
    message = (
        f"{estimate}{slow.slow}/{slow.requests} requests over {slow.bucket_seconds * 1000:g} ms"
        f" (LLR {llr:.2f}; fails at {test.upper:.2f}, passes at {test.lower:.2f})"
    )
    if slow.excluded_warmup:
        message += f", {slow.excluded_warmup} warm-up requests left out"
    phase = {
        SequentialDecision.REJECT: Phase.FAILED,
        SequentialDecision.ACCEPT: Phase.PASSED,
        SequentialDecision.CONTINUE: Phase.INCONCLUSIVE,
    }[decision]
    return Measurement("p95-latency", phase, p95, threshold, query, message)


def measure_latency_comparison(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """Mann-Whitney U (one-sided): is the canary's latency series shifted above stable's?

    A significant shift fails only when the canary median also exceeds the
    stable median by more than ``latency_tolerance``: statistically real but
    negligible differences do not block a release.
    """
    threshold = f"p >= {t.alpha} or median within +{t.latency_tolerance:.0%}"
    canary, stable = obs.canary_latency_series, obs.stable_latency_series
    if canary is None or stable is None:
        return _error("latency-vs-stable", obs, threshold)
    query = obs.queries.get("latency-vs-stable", "")
    clean_canary = [v for v in canary if not math.isnan(v)]
    clean_stable = [v for v in stable if not math.isnan(v)]
    if len(clean_canary) < 3 or len(clean_stable) < 3:
        return Measurement(
            "latency-vs-stable", Phase.INCONCLUSIVE, None, threshold, query, "fewer than 3 points per side"
        )
    p_value = float(stats.mannwhitneyu(clean_canary, clean_stable, alternative="greater").pvalue)
    canary_median = float(sorted(clean_canary)[len(clean_canary) // 2])
    stable_median = float(sorted(clean_stable)[len(clean_stable) // 2])
    shifted = canary_median > stable_median * (1 + t.latency_tolerance)
    message = f"median {canary_median * 1000:.1f} ms vs {stable_median * 1000:.1f} ms, p={p_value:.2g}"
    phase = Phase.FAILED if p_value < t.alpha and shifted else Phase.PASSED
    return Measurement("latency-vs-stable", phase, p_value, threshold, query, message)


def measure_router_errors(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """Errors clients got from the router, its own included (no healthy server: HAProxy answers 503 itself).

    The app's metrics cannot see a replica that died after its health check; the
    router's counters can. Judged in the monitoring window, when all traffic
    goes to the promoted release.
    """
    threshold = f"< {t.max_error_rate:.4%} of router responses"
    if obs.router is None:
        return _error("router-errors", obs, threshold)
    query = obs.queries.get("router-errors", "")
    rate = obs.router.error_rate
    message = f"{obs.router.errors}/{obs.router.requests} router responses were 5xx"
    if obs.router.errors >= t.min_failure_errors and rate >= t.max_error_rate:
        return Measurement("router-errors", Phase.FAILED, rate, threshold, query, message)
    if obs.router.requests < t.min_requests:
        return Measurement("router-errors", Phase.INCONCLUSIVE, rate, threshold, query, message)
    return Measurement("router-errors", Phase.PASSED, rate, threshold, query, message)


def measure_alerts(obs: StepObservation) -> Measurement:
    if obs.critical_alerts is None:
        return _error("critical-alerts", obs, "none firing")
    query = obs.queries.get("critical-alerts", "")
    if obs.critical_alerts:
        return Measurement(
            "critical-alerts",
            Phase.FAILED,
            float(len(obs.critical_alerts)),
            "none firing",
            query,
            ", ".join(obs.critical_alerts),
        )
    return Measurement("critical-alerts", Phase.PASSED, 0.0, "none firing", query, "none firing")


def assess_canary_step(obs: StepObservation, thresholds: CanaryThresholds) -> StepDecision:
    """Combine every measurement: any FAILED fails; else any ERROR errs; else any INCONCLUSIVE waits.

    >>> ok = SliceCounts(requests=100, errors=0)
    >>> fast = SlowRequests(requests=100, slow=0, bucket_seconds=0.2)
    >>> obs = StepObservation(ok, ok, 0.05, [0.01] * 5, [0.01] * 5, [], slow_requests=fast)
    >>> assess_canary_step(obs, CanaryThresholds()).phase
    <Phase.PASSED: 'passed'>
    """
    measurements = [measure_error_rate(obs, thresholds), measure_p95(obs, thresholds), measure_alerts(obs)]
    if not obs.absolute_only:
        measurements[1:1] = [measure_error_comparison(obs, thresholds)]
        measurements[3:3] = [measure_latency_comparison(obs, thresholds)]
    if obs.router is not None or "router-errors" in obs.errors:
        measurements.append(measure_router_errors(obs, thresholds))
    phases = {m.phase for m in measurements}
    for phase in (Phase.FAILED, Phase.ERROR, Phase.INCONCLUSIVE):
        if phase in phases:
            return StepDecision(phase, measurements)
    return StepDecision(Phase.PASSED, measurements)


def decide_action(
    phase: Phase,
    consecutive_errors: int,
    inconclusive_waits: int,
    thresholds: CanaryThresholds,
    backward_incompatible_migration: bool = False,
) -> Action:
    """What the rollout does after one analysis.

    Errors hold (wait) until ``max_consecutive_errors`` in a row, then roll
    back: a rollout never promotes on missing data. A release whose migration
    cannot be undone freezes instead of rolling back.
    """
    give_up = Action.FREEZE if backward_incompatible_migration else Action.ROLLBACK
    if phase is Phase.PASSED:
        return Action.NEXT_STEP
    if phase is Phase.FAILED:
        return give_up
    if phase is Phase.ERROR:
        return give_up if consecutive_errors >= thresholds.max_consecutive_errors else Action.WAIT
    return give_up if inconclusive_waits >= thresholds.max_inconclusive else Action.WAIT


def split_weights(canary_percent: int, canary_replicas: int, stable_replicas: int) -> tuple[int, int]:
    """Per-server HAProxy weights (canary, stable) giving the canary slot ``canary_percent`` of traffic.

    HAProxy balances on the sum of server weights, so each side's weight is
    scaled by the other side's replica count; HAProxy caps weights at 256.

    >>> split_weights(10, 2, 2)
    (20, 180)
    >>> split_weights(50, 1, 2)
    (100, 50)
    """
    if not 0 <= canary_percent <= 100:
        raise ValueError(f"canary weight {canary_percent} must be 0..100")
    if canary_replicas < 1 or stable_replicas < 1:
        raise ValueError("each slot needs at least one replica")
    canary_weight = canary_percent * stable_replicas
    stable_weight = (100 - canary_percent) * canary_replicas
    while max(canary_weight, stable_weight) > 256:
        canary_weight, stable_weight = (canary_weight + 1) // 2, (stable_weight + 1) // 2
    return canary_weight, stable_weight
