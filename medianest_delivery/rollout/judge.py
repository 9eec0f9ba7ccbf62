"""Canary judgement: measurements in, a phase and the next action out. Pure functions.

Like Argo Rollouts' analysis, a failed or empty metric query is data (a
measurement in phase ERROR), never an exception, and never counts as a pass.
Evidence accumulates over the whole step (see `evidence`). The absolute
criteria are sequential tests (Wald's SPRT), so a look every few seconds does
not inflate false rollbacks: the error rate on the canary's failed requests,
the latency limit on the share of requests slower than it (read from the
request histogram, so one cold request cannot fail a release). The canary is
also compared with stable on the same window, by SPRTs on which side the
errors came from and which side the requests slower than stable's median came
from. A canary that fails every request is rejected after three errors,
without waiting for a minimum sample or a full interval. An undecided step
projects, from its observed traffic, how long a verdict will take
(`traffic_shortfall`).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from medianest_delivery.rollout.evidence import (
    BinomialSPRT,
    LatencyHistogram,
    SequentialDecision,
    SlowRequests,
    comparison_boundary,
)

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
    alpha: float = 0.01  # false rollback rate of every test, however often the step is looked at
    # Latency against stable, as shifts of stable's distribution: a canary whose requests take
    # `latency_tolerance` longer (+10%) passes with 1 - alpha, one `latency_shift_alarm` longer (+25%)
    # is caught with 1 - missed_regression_rate (see `latency_comparison_test`).
    latency_tolerance: float = 0.10
    latency_shift_alarm: float = 0.25
    max_consecutive_errors: int = 3  # analysis errors in a row before rolling back
    # The error tests: a canary failing this many times the limit (0.5%), or this many times as often as
    # stable, is caught with probability 1 - missed_regression_rate; one at the limit passes with 1 - alpha.
    error_rate_alarm_factor: float = 5.0
    # How long a step may take to reach its verdict. From the observed request rate the judge projects
    # when it will; a projection past the deadline is said at once, with the numbers, and then
    # `insufficient_traffic` applies: "fail" rolls back with that reason, "extend" waits up to
    # `max_extended_seconds` for the evidence.
    step_deadline_seconds: float = 1200.0
    insufficient_traffic: str = "fail"
    max_extended_seconds: float = 3600.0
    # The latency test: a canary with this share of requests over max_p95_seconds (its p80 over the
    # limit) is caught with probability 1 - missed_regression_rate; one at exactly 5% (its p95 at the
    # limit) is rolled back with probability at most alpha, however often the step is looked at.
    slow_share_alarm: float = 0.20
    missed_regression_rate: float = 0.05
    # A replica's first seconds of traffic are its cold start: left out of the latency test (not the errors).
    warmup_seconds: float = 3.0

    def __post_init__(self) -> None:
        self.latency_test()  # names a bad combination when the thresholds are built, not mid-rollout
        self.error_test()
        if self.warmup_seconds < 0:
            raise ValueError(f"warmup_seconds {self.warmup_seconds} must be >= 0")
        if self.insufficient_traffic not in INSUFFICIENT_TRAFFIC_POLICIES:
            raise ValueError(
                f"insufficient_traffic {self.insufficient_traffic!r} must be one of {INSUFFICIENT_TRAFFIC_POLICIES}"
            )
        if not 0 < self.step_deadline_seconds <= self.max_extended_seconds:
            raise ValueError(
                f"need 0 < step_deadline_seconds {self.step_deadline_seconds} <= max_extended_seconds"
                f" {self.max_extended_seconds}"
            )

    def latency_test(self) -> BinomialSPRT:
        return BinomialSPRT(P95_SLOW_SHARE, self.slow_share_alarm, self.alpha, self.missed_regression_rate)

    def error_test(self) -> BinomialSPRT:
        """The canary's error rate: at the limit (good) against `error_rate_alarm_factor` times it (bad)."""
        return BinomialSPRT(
            self.max_error_rate,
            self.max_error_rate * self.error_rate_alarm_factor,
            self.alpha,
            self.missed_regression_rate,
        )

    def error_comparison_test(self, canary_share: float) -> BinomialSPRT:
        """Which side each error came from, when the canary serves ``canary_share`` of requests.

        Equal error rates give the canary that share of the errors (good); a canary
        failing `error_rate_alarm_factor` times as often gives it more (bad).
        """
        return BinomialSPRT(
            canary_share,
            _canary_share_of_events(self.error_rate_alarm_factor, canary_share),
            self.alpha,
            self.missed_regression_rate,
        )

    def latency_comparison_test(self, canary_share: float, stable: LatencyHistogram, boundary: float) -> BinomialSPRT:
        """Which side each request slower than ``boundary`` (near stable's median) came from.

        The hypotheses are shifts of stable's own distribution: were every canary
        request `latency_tolerance` slower, its share slower than the boundary would
        be stable's share slower than boundary / 1.1; `latency_shift_alarm`, than
        boundary / 1.25 (read from stable's histogram). As ratios to stable's share,
        they become the canary's expected share of all slow requests, as in
        `error_comparison_test`; so the test needs no assumption about the spread.
        """
        slow_share = max(stable.share_slower_than(boundary), 1e-6)
        ok = stable.share_slower_than(boundary / (1 + self.latency_tolerance)) / slow_share
        alarm = stable.share_slower_than(boundary / (1 + self.latency_shift_alarm)) / slow_share
        # Buckets too coarse to tell the shifts apart still get a test: at least 1.02 and 1.1x that.
        ok = max(ok, 1.02)
        alarm = max(alarm, ok * 1.1)
        return BinomialSPRT(
            _canary_share_of_events(ok, canary_share),
            _canary_share_of_events(alarm, canary_share),
            self.alpha,
            self.missed_regression_rate,
        )

    @property
    def error_settings(self) -> str:
        return (
            f"SPRT {self.max_error_rate:.2%} vs {self.max_error_rate * self.error_rate_alarm_factor:.2%},"
            f" alpha {self.alpha:g}, beta {self.missed_regression_rate:g}"
        )


INSUFFICIENT_TRAFFIC_POLICIES = ("fail", "extend")


def _canary_share_of_events(ratio: float, canary_share: float) -> float:
    """The canary's expected share of all events (errors, slow requests) when it serves ``canary_share`` of
    requests and has them ``ratio`` times as often as stable."""
    return ratio * canary_share / (ratio * canary_share + 1 - canary_share)


def _ratio(share_of_events: float, canary_share: float) -> float:
    """The inverse of `_canary_share_of_events`: the canary-to-stable ratio behind a share of events."""
    return (share_of_events / (1 - share_of_events)) * ((1 - canary_share) / canary_share)


@dataclass(frozen=True)
class _SlowSplit:
    """Requests on each side slower than the comparison boundary, and the latency SPRT over them."""

    boundary: float
    slow_canary: int
    slow_stable: int
    canary_share: float  # of all requests
    test: BinomialSPRT

    @property
    def llr(self) -> float:
        return self.test.log_likelihood_ratio(self.slow_canary + self.slow_stable, self.slow_canary)

    def decide(self) -> SequentialDecision:
        return self.test.decide(self.slow_canary + self.slow_stable, self.slow_canary)


def _slow_split(
    canary: LatencyHistogram, stable: LatencyHistogram, t: CanaryThresholds
) -> _SlowSplit | tuple[Phase, str]:
    """The latency comparison's evidence, or the phase and reason when there is none (both sides must have
    requests): no shared bucket is broken metrics (ERROR); a stable the buckets cannot resolve is not (PASSED)."""
    boundary = comparison_boundary(stable, canary)
    if boundary is None:
        return Phase.ERROR, "the histograms share no bucket"
    slow_canary, slow_stable = canary.slower_than(boundary), stable.slower_than(boundary)
    if not _resolvable(slow_stable, stable.total):
        return Phase.PASSED, (
            f"stable's {stable.total} requests sit on one side of every bucket boundary ({slow_stable} over"
            f" {boundary * 1000:g} ms): the buckets cannot resolve a shift; the p95 limit still judges latency"
        )
    share = canary.total / (canary.total + stable.total)
    return _SlowSplit(boundary, slow_canary, slow_stable, share, t.latency_comparison_test(share, stable, boundary))


def _resolvable(slow: int, total: int) -> bool:
    """Whether stable's requests split at the comparison boundary (2-98% slower): else the histogram puts
    them all in one bucket and says nothing about a shift smaller than it."""
    return 0.02 <= slow / total <= 0.98


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
    canary_latency: LatencyHistogram | None  # the step's request histogram, warm-ups left out
    stable_latency: LatencyHistogram | None
    critical_alerts: Sequence[str] | None
    queries: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    # What clients got from the router (HAProxy's own 503s included); None when not judged.
    router: SliceCounts | None = None
    # A monitoring window after promotion: nothing to compare with, absolute criteria only.
    absolute_only: bool = False
    # The canary's requests over the latency limit since the step began (histogram buckets).
    slow_requests: SlowRequests | None = None
    # The step's last analysed weight: the error rate must be proven below the limit (the SPRT accepts),
    # not merely not rejected, before the release takes all traffic.
    proof_required: bool = False
    seconds_since_step_start: float | None = None


@dataclass(frozen=True)
class VerdictOutlook:
    """How far a step is from its verdict, in requests and, at the observed rate, in seconds."""

    canary_requests: int
    requests_needed: int  # more canary requests (none failing, none slow) before the tests accept
    requests_per_second: float | None  # the canary's, since the step began
    waiting_for: list[str]
    seconds: float = 0.0  # since the step began

    @property
    def eta_seconds(self) -> float | None:
        if self.requests_needed == 0:
            return 0.0
        if not self.requests_per_second:
            return None
        return self.requests_needed / self.requests_per_second

    @property
    def optimistic_eta_seconds(self) -> float | None:
        """The ETA at the highest rate the requests seen so far allow (about a 97.5% Poisson upper bound).

        A step is cut short only when even this is too late: a few seconds of sparse
        traffic must not end a step that could still decide.
        """
        if self.requests_needed == 0:
            return 0.0
        if self.seconds <= 0:
            return None
        n = self.canary_requests
        return self.requests_needed / ((n + 2 * math.sqrt(n) + 1) / self.seconds)

    def describe(self) -> str:
        rate = f"{self.requests_per_second:.2f} req/s" if self.requests_per_second is not None else "no rate yet"
        eta, soonest = self.eta_seconds, self.optimistic_eta_seconds
        projected = f"~{eta:.0f} s" if eta is not None else "never at this rate"
        if eta and soonest is not None and soonest < eta:
            projected += f" (at best {soonest:.0f} s)"
        return (
            f"{', '.join(self.waiting_for)} need ~{self.requests_needed} more canary requests"
            f" ({self.canary_requests} so far, {rate}): {projected}"
        )


@dataclass(frozen=True)
class StepDecision:
    phase: Phase
    measurements: list[Measurement]
    outlook: VerdictOutlook | None = None

    @property
    def reasons(self) -> list[str]:
        return [f"{m.metric}: {m.message}" for m in self.measurements if m.phase in (Phase.FAILED, Phase.ERROR)]


def _error(metric: str, observation: StepObservation, threshold: str) -> Measurement:
    reason = observation.errors.get(metric, "no data")
    return Measurement(metric, Phase.ERROR, None, threshold, observation.queries.get(metric, ""), reason)


def _sprt_phase(decision: SequentialDecision) -> Phase:
    return {
        SequentialDecision.REJECT: Phase.FAILED,
        SequentialDecision.ACCEPT: Phase.PASSED,
        SequentialDecision.CONTINUE: Phase.INCONCLUSIVE,
    }[decision]


def measure_error_rate(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """The absolute criterion as a sequential test on the canary's failed requests.

    A canary that fails is rejected after a handful of errors. Passing needs
    proof (about 750 clean requests at the defaults) only where
    ``proof_required`` (the last analysed step); earlier steps move on while
    the test has not rejected, each step judged on its own evidence.
    """
    threshold = f"< {t.max_error_rate:.2%} ({t.error_settings})"
    if obs.canary is None:
        return _error("error-rate", obs, threshold)
    query = obs.queries.get("error-rate", "")
    c = obs.canary
    if not 0 <= c.errors <= c.requests:
        message = f"{c.errors} errors of {c.requests} requests: counters disagree"
        return Measurement("error-rate", Phase.ERROR, None, threshold, query, message)
    test = t.error_test()
    llr = test.log_likelihood_ratio(c.requests, c.errors)
    decision = test.decide(c.requests, c.errors)
    message = f"{c.errors}/{c.requests} failed (LLR {llr:.2f}; fails at {test.upper:.2f}, proven at {test.lower:.2f})"
    phase = _sprt_phase(decision)
    if phase is Phase.INCONCLUSIVE and not obs.proof_required and c.requests > 0:
        # An earlier step moves on while the test has not rejected (its pace is set by the latency test);
        # the proof, with its stated error rates, is due before all traffic moves.
        phase = Phase.PASSED
        message += "; not rejected, proof due at the last step"
    return Measurement("error-rate", phase, c.error_rate, threshold, query, message)


def measure_error_comparison(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """A sequential test on where the errors came from: more of them from the canary than its traffic share?

    With equal error rates the canary's share of all errors is its share of
    requests. The test only ever fails a release: a canary and a stable that
    both fail nothing give it no evidence, and that is not a reason to wait.
    """
    threshold = f"not {t.error_rate_alarm_factor:g}x stable's rate (SPRT, alpha {t.alpha:g})"
    if obs.canary is None or obs.stable is None:
        return _error("error-vs-stable", obs, threshold)
    query = obs.queries.get("error-rate", "")
    c, s = obs.canary, obs.stable
    if c.errors > c.requests or s.errors > s.requests or min(c.errors, s.errors) < 0:
        message = f"more errors than requests (canary {c.errors}/{c.requests}, stable {s.errors}/{s.requests})"
        return Measurement("error-vs-stable", Phase.ERROR, None, threshold, query, message)
    if c.requests == 0 or s.requests == 0:
        return Measurement("error-vs-stable", Phase.INCONCLUSIVE, None, threshold, query, "no traffic on one side")
    test = t.error_comparison_test(c.requests / (c.requests + s.requests))
    llr = test.log_likelihood_ratio(c.errors + s.errors, c.errors)
    message = (
        f"canary {c.errors}/{c.requests} ({c.error_rate:.2%}) vs stable {s.errors}/{s.requests}"
        f" ({s.error_rate:.2%}), LLR {llr:.2f}, fails at {test.upper:.2f}"
    )
    phase = Phase.FAILED if test.decide(c.errors + s.errors, c.errors) is SequentialDecision.REJECT else Phase.PASSED
    return Measurement("error-vs-stable", phase, llr, threshold, query, message)


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
    return Measurement("p95-latency", _sprt_phase(decision), p95, threshold, query, message)


def measure_latency_comparison(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """A sequential test on request-level latency against stable, from both sides' histograms.

    Take the bucket boundary where stable's requests split closest to half and
    half (its median, as the histogram resolves it). With the same distribution
    the canary's share of all requests slower than it is its share of requests;
    a slower canary has more. The SPRT on where each slow request came from
    fails a slower canary, passes at the last step only when proven
    (`proof_required`), and earlier moves on while it has not rejected.
    """
    threshold = (
        f"stable's latency +{t.latency_tolerance:.0%} (ok) vs +{t.latency_shift_alarm:.0%}"
        f" (SPRT, alpha {t.alpha:g}, beta {t.missed_regression_rate:g})"
    )
    canary, stable = obs.canary_latency, obs.stable_latency
    if canary is None or stable is None or "latency-vs-stable" in obs.errors:
        return _error("latency-vs-stable", obs, threshold)
    query = obs.queries.get("latency-vs-stable", "")
    if canary.total == 0 or stable.total == 0:
        return Measurement("latency-vs-stable", Phase.INCONCLUSIVE, None, threshold, query, "no requests on one side")
    split = _slow_split(canary, stable, t)
    if isinstance(split, tuple):
        return Measurement("latency-vs-stable", split[0], None, threshold, query, split[1])
    test, share, llr = split.test, split.canary_share, split.llr
    message = (
        f"over {split.boundary * 1000:g} ms: canary {split.slow_canary}/{canary.total}"
        f" ({split.slow_canary / canary.total:.0%}) vs stable {split.slow_stable}/{stable.total}"
        f" ({split.slow_stable / stable.total:.0%});"
        f" ok up to {_ratio(test.good_share, share):.2f}x, alarm at {_ratio(test.bad_share, share):.2f}x;"
        f" LLR {llr:.2f}, fails at {test.upper:.2f}, proven at {test.lower:.2f}"
    )
    phase = _sprt_phase(split.decide())
    if phase is Phase.INCONCLUSIVE and not obs.proof_required:
        phase = Phase.PASSED
        message += "; not rejected, proof due at the last step"
    return Measurement("latency-vs-stable", phase, llr, threshold, query, message)


def measure_router_errors(obs: StepObservation, t: CanaryThresholds) -> Measurement:
    """Errors clients got from the router, its own included (no healthy server: HAProxy answers 503 itself).

    The app's metrics cannot see a replica that died after its health check; the
    router's counters can. Judged in the monitoring window, when all traffic
    goes to the promoted release, by the same sequential test as the app's errors.
    """
    threshold = f"< {t.max_error_rate:.2%} of router responses ({t.error_settings})"
    if obs.router is None:
        return _error("router-errors", obs, threshold)
    query = obs.queries.get("router-errors", "")
    r = obs.router
    message = f"{r.errors}/{r.requests} router responses were 5xx"
    if not 0 <= r.errors <= r.requests:
        return Measurement("router-errors", Phase.ERROR, None, threshold, query, message + ": counters disagree")
    if t.error_test().decide(r.requests, r.errors) is SequentialDecision.REJECT:
        return Measurement("router-errors", Phase.FAILED, r.error_rate, threshold, query, message)
    if r.requests == 0:
        return Measurement("router-errors", Phase.INCONCLUSIVE, None, threshold, query, "no requests yet")
    return Measurement("router-errors", Phase.PASSED, r.error_rate, threshold, query, message)


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
    >>> hist = LatencyHistogram({0.01: 50, 0.2: 100}, 100)
    >>> obs = StepObservation(ok, ok, 0.05, hist, hist, [], slow_requests=fast)
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
    for phase in (Phase.FAILED, Phase.ERROR):
        if phase in phases:
            return StepDecision(phase, measurements)
    if Phase.INCONCLUSIVE in phases:
        return StepDecision(Phase.INCONCLUSIVE, measurements, verdict_outlook(obs, thresholds))
    return StepDecision(Phase.PASSED, measurements)


def verdict_outlook(obs: StepObservation, t: CanaryThresholds) -> VerdictOutlook:
    """How many more canary requests the undecided tests need to accept, and at the step's rate how long.

    Counted as if every further request were good and fast: the least a pass can
    take. The rate is the canary's requests over the step so far.
    """
    requests = obs.canary.requests if obs.canary is not None else 0
    needed: dict[str, int] = {}
    if obs.canary is not None and obs.proof_required and 0 <= obs.canary.errors <= requests:
        needed["error-rate"] = t.error_test().more_trials_to_accept(requests, obs.canary.errors)
    slow = obs.slow_requests
    if slow is not None and 0 <= slow.slow <= slow.requests:
        needed["p95-latency"] = t.latency_test().more_trials_to_accept(slow.requests, slow.slow)
    comparison = _latency_comparison_needs(obs, t)
    if comparison is not None:
        needed["latency-vs-stable"] = comparison
    waiting = {name: n for name, n in needed.items() if n > 0}
    elapsed = obs.seconds_since_step_start
    rate = requests / elapsed if elapsed and elapsed > 0 and requests else None
    return VerdictOutlook(
        requests, max(waiting.values(), default=0), rate, sorted(waiting) or ["the step"], elapsed or 0.0
    )


def _latency_comparison_needs(obs: StepObservation, t: CanaryThresholds) -> int | None:
    """Canary requests the latency comparison still needs at the last step, expected with stable's distribution.

    Unlike the one-sample tests there is no "all good" path (half of stable's
    requests are slow by construction), so this is the expected count: the
    distance to the acceptance bound over the expected evidence per request.
    """
    canary, stable = obs.canary_latency, obs.stable_latency
    if not obs.proof_required or canary is None or stable is None or not canary.total or not stable.total:
        return None
    split = _slow_split(canary, stable, t)
    if isinstance(split, tuple):
        return None
    test = split.test
    if split.llr <= test.lower:
        return 0
    good, bad = test.good_share, test.bad_share
    per_slow = good * math.log(bad / good) + (1 - good) * math.log((1 - bad) / (1 - good))  # < 0 under H0
    slow_fraction = max((split.slow_canary + split.slow_stable) / (canary.total + stable.total), 0.05)
    slow_needed = (split.llr - test.lower) / -per_slow
    return math.ceil(slow_needed / slow_fraction * split.canary_share)


def traffic_shortfall(outlook: VerdictOutlook | None, elapsed_seconds: float, t: CanaryThresholds) -> str | None:
    """Why the step cannot reach a verdict by its deadline at the observed traffic, or None while it can.

    Said as soon as the projection is known (a rate needs a few requests), not
    after the deadline has passed. Under the "extend" policy the deadline is
    `max_extended_seconds`.

    >>> slow_trickle = VerdictOutlook(40, 1000, 0.5, ["error-rate"], seconds=80)
    >>> traffic_shortfall(slow_trickle, 80, CanaryThresholds())[:61]
    'insufficient traffic: error-rate need ~1000 more canary reque'
    >>> traffic_shortfall(VerdictOutlook(400, 300, 5.0, ["error-rate"], seconds=80), 80, CanaryThresholds()) is None
    True
    """
    deadline = t.step_deadline_seconds if t.insufficient_traffic == "fail" else t.max_extended_seconds
    left = deadline - elapsed_seconds
    if outlook is None:
        return None if left > 0 else f"no verdict within {deadline:.0f} s"
    eta = outlook.optimistic_eta_seconds
    if left <= 0 or (outlook.canary_requests >= MIN_REQUESTS_FOR_A_RATE and (eta is None or eta > left)):
        return f"insufficient traffic: {outlook.describe()}, {max(left, 0):.0f} s left of the step's {deadline:.0f} s"
    return None


# Requests the canary must have served before its rate projects anything.
MIN_REQUESTS_FOR_A_RATE = 10


def decide_action(
    phase: Phase,
    consecutive_errors: int,
    thresholds: CanaryThresholds,
    backward_incompatible_migration: bool = False,
    shortfall: str | None = None,
) -> Action:
    """What the rollout does after one analysis.

    Errors hold (wait) until ``max_consecutive_errors`` in a row, then roll
    back: a rollout never promotes on missing data. An undecided step waits
    unless ``shortfall`` (from `traffic_shortfall`) says it cannot decide in
    time. A release whose migration cannot be undone freezes instead of
    rolling back.
    """
    give_up = Action.FREEZE if backward_incompatible_migration else Action.ROLLBACK
    if phase is Phase.PASSED:
        return Action.NEXT_STEP
    if phase is Phase.FAILED:
        return give_up
    if phase is Phase.ERROR:
        return give_up if consecutive_errors >= thresholds.max_consecutive_errors else Action.WAIT
    return give_up if shortfall else Action.WAIT
