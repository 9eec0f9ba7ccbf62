"""Benchmark: how often the canary judge is right, and how fast, at 5, 50 and 500 requests/s.

    .venv/bin/python benchmarks/canary_judgement.py            # simulation only (about a minute)
    .venv/bin/python benchmarks/canary_judgement.py --e2e 10   # plus 10 healthy and 10 bad releases on the stack

1. Simulation of the real judge (`assess_canary_step`, `analyse_until_decided`
   and `traffic_shortfall`, default `CanaryThresholds`, steps 10/30/50, a look
   every 2 s on a virtual clock) on synthetic request streams: Poisson
   arrivals split by weight, Bernoulli errors, log-normal latencies read
   through the sample app's histogram buckets, and a cold start (the canary's
   first 3 s are 3x slower: the warm-up excludes them). Replica restarts are
   not simulated here: the evidence code turns reset counters into the step's
   true counts before the judge sees them (tests/unit/rollout/test_evidence.py
   and the integration test that restarts a canary replica mid-step), so
   the judge gets exactly what this feeds it. Side by side, the baseline:
   the judge this project had before its sequential tests (a pass after 50
   requests under 0.1% errors and a one-look p95 under 200 ms; a fail on 3
   errors at >= 0.1% or a one-look p95 over the limit; 10 waits at most).
   Targets (issue 12): false rollbacks of identical canary and stable <= 1%
   over >= 1,000 rollouts; detection >= 95% for 2% errors within 500 canary
   requests, >= 80% for 0.5% errors; a +25% median shift detected >= 95% within
   60 s at 50 requests/s; and a power curve.
2. End to end (`--e2e N`): N healthy and N bad releases (2% errors, or +60 ms)
   of the sample app by canary with default parameters in a preview
   environment of its own, under 50 requests/s; outcome, time to verdict and
   client failures of each.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from medianest_delivery.rollout.analysis import ChartPoint, StepAssessment  # noqa: E402
from medianest_delivery.rollout.canary_loop import analyse_until_decided  # noqa: E402
from medianest_delivery.rollout.evidence import LatencyHistogram, SlowRequests, threshold_bucket  # noqa: E402
from medianest_delivery.rollout.judge import (  # noqa: E402
    Action,
    CanaryThresholds,
    SliceCounts,
    StepObservation,
    assess_canary_step,
)

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0)  # the sample app's
STEPS = (10, 30, 50)  # analysed; 100 is the monitoring window's
INTERVAL = 2.0
COLD_SECONDS, COLD_FACTOR = 3.0, 3.0


@dataclass(frozen=True)
class Release:
    """The canary's behaviour relative to stable."""

    error_rate: float = 0.0002
    median_shift: float = 0.0  # +0.25: a 25% slower median
    median_seconds: float = 0.020
    sigma: float = 0.5


@dataclass
class SideCounts:
    requests: int = 0
    errors: int = 0
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(BUCKETS), dtype=np.int64))  # at or below
    judged: int = 0  # requests outside the warm-up

    def histogram(self) -> LatencyHistogram:
        return LatencyHistogram({b: int(c) for b, c in zip(BUCKETS, self.buckets, strict=True)}, self.judged)


def bucket_probabilities(median: float, sigma: float) -> np.ndarray:
    """P(latency <= each boundary) for a log-normal latency."""
    from math import erf

    return np.array([0.5 * (1 + erf(math.log(b / median) / (sigma * math.sqrt(2)))) for b in BUCKETS])


class SimulatedStep:
    """One canary step's cumulative counts, grown interval by interval (what the real analysis reads)."""

    def __init__(
        self,
        rng: np.random.Generator,
        rate: float,
        weight: int,
        canary: Release,
        stable: Release,
        cold_start: str = "warm-up",
    ) -> None:
        self.rng, self.rate, self.weight = rng, rate, weight
        self.canary_release, self.stable_release = canary, stable
        self.canary, self.stable = SideCounts(), SideCounts()
        self.elapsed = 0.0
        # "warm-up": a new replica's first seconds are left out (the default); "none": judged as served;
        # "fresh-baseline": no warm-up, and the comparison is with a stable-version replica started beside
        # the canary (same share, same cold start), as Kayenta recommends.
        self.cold_start = cold_start

    def _serve(self, side: SideCounts, release: Release, share: float, seconds: float, cold: bool) -> None:
        n = int(self.rng.poisson(self.rate * share * seconds))
        if n == 0:
            return
        side.requests += n
        side.errors += int(self.rng.binomial(n, release.error_rate))
        median = release.median_seconds * (1 + release.median_shift) * (COLD_FACTOR if cold else 1.0)
        if cold and self.cold_start == "warm-up":
            return  # the warm-up leaves a new replica's first seconds out of the latency evidence
        cdf = bucket_probabilities(median, release.sigma)
        cells = self.rng.multinomial(n, np.diff(np.concatenate(([0.0], cdf, [1.0]))))
        side.buckets += np.cumsum(cells[:-1])
        side.judged += n

    def advance(self, seconds: float) -> None:
        share = self.weight / 100
        cold = self.elapsed < COLD_SECONDS and self.weight == STEPS[0]  # a new canary's cold start
        self._serve(self.canary, self.canary_release, share, seconds, cold)
        if self.cold_start == "fresh-baseline":
            self._serve(self.stable, self.stable_release, share, seconds, cold)
        else:
            self._serve(self.stable, self.stable_release, 1 - share, seconds, False)
        self.elapsed += seconds

    def observation(self, proof_required: bool, t: CanaryThresholds) -> StepObservation:
        canary, stable = self.canary, self.stable
        limit = threshold_bucket(BUCKETS, t.max_p95_seconds) or BUCKETS[0]
        canary_hist = canary.histogram()
        slow = SlowRequests(canary.judged, canary_hist.slower_than(limit), limit, canary.requests - canary.judged)
        return StepObservation(
            SliceCounts(canary.requests, canary.errors),
            SliceCounts(stable.requests, stable.errors),
            None,
            canary_hist,
            stable.histogram(),
            [],
            slow_requests=slow,
            proof_required=proof_required,
            seconds_since_step_start=self.elapsed,
        )


@dataclass(frozen=True)
class RolloutResult:
    rolled_back: bool
    seconds: float
    canary_requests: int  # served by the canary until the decision
    reason: str


def simulate_rollout(
    rng: np.random.Generator, rate: float, canary: Release, judge: str, cold_start: str = "warm-up"
) -> RolloutResult:
    """Steps 10/30/50 with the real loop on a virtual clock (or the baseline judge); the outcome and its cost."""
    thresholds = CanaryThresholds()
    stable = Release()
    total_seconds, canary_requests = 0.0, 0
    for n, weight in enumerate(STEPS, start=1):
        step = SimulatedStep(rng, rate, weight, canary, stable, cold_start)
        if judge == "sequential":
            verdict = analyse_until_decided(
                JudgedStep(step, thresholds, proof_required=n == len(STEPS)),
                thresholds,
                backward_compatible=True,
                interval_seconds=INTERVAL,
                sleep=step.advance,
                clock=lambda step=step: step.elapsed,  # type: ignore[misc]
            )
            action, reason = verdict.action, "; ".join(verdict.reasons)
        else:
            action, reason = baseline_step(step, thresholds)
        total_seconds += step.elapsed
        canary_requests += step.canary.requests
        if action is not Action.NEXT_STEP:
            return RolloutResult(True, total_seconds, canary_requests, reason)
    return RolloutResult(False, total_seconds, canary_requests, "")


class JudgedStep:
    """The real assessment of a simulated step: what `assess-canary-step` does with Prometheus' answers."""

    def __init__(self, step: SimulatedStep, thresholds: CanaryThresholds, proof_required: bool) -> None:
        self.step, self.thresholds, self.proof_required = step, thresholds, proof_required

    def __call__(self, analysis: int) -> StepAssessment:
        decision = assess_canary_step(self.step.observation(self.proof_required, self.thresholds), self.thresholds)
        return StepAssessment(
            decision.phase,
            decision.reasons,
            decision.measurements,
            self.step.canary.requests,
            ChartPoint(None, None, None, None),
            decision.outlook,
        )


def baseline_step(step: SimulatedStep, t: CanaryThresholds) -> tuple[Action, str]:
    """The judge before the sequential tests: min 50 requests, 3 errors fail, a one-look p95, 10 waits."""
    waits = 0
    while True:
        step.advance(INTERVAL)
        canary = step.canary
        rate = canary.errors / canary.requests if canary.requests else 0.0
        if canary.errors >= 3 and rate >= t.max_error_rate:
            return Action.ROLLBACK, f"error-rate {rate:.2%}"
        hist = canary.histogram()
        p95 = _histogram_quantile(hist, 0.95)
        if p95 is not None and p95 > t.max_p95_seconds:
            return Action.ROLLBACK, f"p95 {p95 * 1000:.0f} ms"
        if canary.requests >= 50:
            return (Action.NEXT_STEP, "") if rate < t.max_error_rate else (Action.ROLLBACK, f"error-rate {rate:.2%}")
        waits += 1
        if waits >= 10:
            return Action.ROLLBACK, "inconclusive"


def _histogram_quantile(hist: LatencyHistogram, q: float) -> float | None:
    """Prometheus' histogram_quantile: linear within the bucket."""
    if hist.total == 0:
        return None
    target, lower, below = q * hist.total, 0.0, 0
    for boundary in BUCKETS:
        count = hist.at_or_below[boundary]
        if count >= target:
            inside = count - below
            return lower + (boundary - lower) * ((target - below) / inside if inside else 1.0)
        lower, below = boundary, count
    return BUCKETS[-1]


def share_rolled_back(
    rate: float, release: Release, runs: int, judge: str, seed: int, cold_start: str = "warm-up"
) -> tuple[float, list[RolloutResult]]:
    rng = np.random.default_rng(seed)
    results = [simulate_rollout(rng, rate, release, judge, cold_start) for _ in range(runs)]
    return sum(r.rolled_back for r in results) / runs, results


def simulation(runs: int) -> None:
    print(f"1. Simulation: {runs} rollouts per cell, steps {STEPS}, a look every {INTERVAL:g} s (virtual clock)")
    print(f"   {'scenario':<44} {'req/s':>6} {'sequential':>11} {'baseline':>9}  time to verdict (sequential, median)")
    scenarios = [
        ("identical canary and stable: false rollbacks", Release(), "<= 1%"),
        ("2% errors: detected", Release(error_rate=0.02), ">= 95%"),
        ("0.5% errors: detected", Release(error_rate=0.005), ">= 80%"),
        ("+25% median latency: detected", Release(median_shift=0.25), ">= 95%"),
    ]
    started = time.monotonic()
    for name, release, target in scenarios:
        for rate in (5.0, 50.0, 500.0):
            ours, results = share_rolled_back(rate, release, runs, "sequential", seed=1)
            base, _ = share_rolled_back(rate, release, runs, "baseline", seed=1)
            times = sorted(r.seconds for r in results)
            print(
                f"   {name:<44} {rate:>6g} {ours:>10.1%} {base:>9.1%}  {times[len(times) // 2]:.0f} s (target {target})"
            )
    print(f"   ({time.monotonic() - started:.0f} s of simulation)")
    print("   detection within a budget (sequential judge):")
    _, bad = share_rolled_back(50.0, Release(error_rate=0.02), runs, "sequential", seed=2)
    within = sum(r.rolled_back and r.canary_requests <= 500 for r in bad) / runs
    print(f"   2% errors at 50 req/s rolled back within 500 canary requests: {within:.1%} (target >= 95%)")
    _, slow = share_rolled_back(50.0, Release(median_shift=0.25), runs, "sequential", seed=3)
    within = sum(r.rolled_back and r.seconds <= 60 for r in slow) / runs
    print(f"   +25% median at 50 req/s rolled back within 60 s: {within:.1%} (target >= 95%)")
    print(f"   cold starts (the canary's first {COLD_SECONDS:g} s {COLD_FACTOR:g}x slower), sequential judge:")
    print(f"   {'':<44} {'req/s':>6} {'healthy rolled back':>20} {'+25% caught':>12}")
    for mode in ("warm-up", "none", "fresh-baseline"):
        for rate in (5.0, 50.0, 500.0):
            healthy, _ = share_rolled_back(rate, Release(), runs // 2, "sequential", seed=6, cold_start=mode)
            shifted, _ = share_rolled_back(rate, Release(median_shift=0.25), runs // 2, "sequential", 6, mode)
            print(f"   {mode:<44} {rate:>6g} {healthy:>20.1%} {shifted:>12.1%}")
    print("   power curve at 50 req/s (share rolled back, sequential vs baseline):")
    for error_rate in (0.0002, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02):
        ours, _ = share_rolled_back(50.0, Release(error_rate=error_rate), runs // 2, "sequential", seed=4)
        base, _ = share_rolled_back(50.0, Release(error_rate=error_rate), runs // 2, "baseline", seed=4)
        print(f"     errors {error_rate:>6.2%}: {ours:>6.1%} vs {base:>6.1%}")
    for shift in (0.0, 0.05, 0.10, 0.15, 0.25, 0.5):
        ours, _ = share_rolled_back(50.0, Release(median_shift=shift), runs // 2, "sequential", seed=5)
        base, _ = share_rolled_back(50.0, Release(median_shift=shift), runs // 2, "baseline", seed=5)
        print(f"     median +{shift:>4.0%}: {ours:>6.1%} vs {base:>6.1%}")


def end_to_end(releases: int) -> None:
    """Healthy and bad releases of the sample app by canary, default parameters, on the local stack."""
    import os
    import tempfile
    import uuid

    from medianest_delivery.localstack.stack import export_environment, stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings)
    os.environ.update(export_environment(settings))

    from prefect_docker import DockerHost

    from benchmarks.sample_releases import publish_sample_releases
    from flows.deliver import deliver
    from medianest_delivery.appconfig import load_app_config
    from medianest_delivery.errors import RolloutFailedError
    from medianest_delivery.localstack.prefect_api import stack_prefect_settings
    from medianest_delivery.rollout.app_role import drop_environment_database
    from medianest_delivery.rollout.environment import EnvironmentController
    from medianest_delivery.rollout.loadgen import LoadGenerator
    from medianest_delivery.rollout.runtime import DockerRuntime

    print(f"\n2. End to end: {releases} healthy and {releases} bad releases by canary, default parameters,")
    print("   under 50 req/s to the API and 10 req/s to the frontend")
    app_config = str(ROOT / "examples" / "medianest" / "delivery.yaml")
    suffix = uuid.uuid4().hex[:6]
    environment = f"preview-judge{suffix}"
    bad_kinds = [("2% errors", {"MEDIANEST_ERROR_RATE": "0.02"}), ("+60 ms", {"MEDIANEST_EXTRA_LATENCY_MS": "60"})]
    plan: list[tuple[str, dict[str, str]]] = []
    for n in range(releases):
        plan += [("healthy", {}), bad_kinds[n % 2]]
    rows = []
    with stack_prefect_settings(settings), tempfile.TemporaryDirectory(prefix="bench-judge-") as tmp:
        manifests = publish_sample_releases(settings, suffix, tmp)
        env = EnvironmentController(
            environment,
            load_app_config(app_config),
            DockerRuntime(DockerHost(base_url=settings.docker_host).get_client()),
            settings,
        )
        common = {"environment": environment, "staging_environment": None, "auto_approve": True}
        try:
            deliver(release_manifest=manifests[0], **common)
            stable = 0
            for kind, fault in plan:
                candidate = 1 - stable
                api = LoadGenerator(f"http://127.0.0.1:{env.plan.router_port(0)}/api/media", 50, 90000, 1800).start()
                web = LoadGenerator(f"http://127.0.0.1:{env.plan.router_port(1)}/", 10, 18000, 1800).start()
                started = time.time()
                try:
                    summary = deliver(release_manifest=manifests[candidate], fault_injection=fault, **common)
                except RolloutFailedError as exc:
                    summary = exc.summary
                finally:
                    seen, pages = api.stop(), web.stop()
                decided = [c.get("decided_at") for c in summary["components"] if c.get("decided_at")]
                verdict = (max(decided) if decided else time.time()) - started
                if summary["outcome"] == "promoted":
                    stable = candidate
                rows.append(
                    (
                        kind,
                        summary["outcome"],
                        f"{verdict:.0f} s",
                        f"{seen.failed + pages.failed}/{seen.total + pages.total}",
                        (summary.get("reason") or "")[:90],
                    )
                )
                print(f"   {kind:<10} {rows[-1][1]:<12} {rows[-1][2]:>7}  failed {rows[-1][3]:<12} {rows[-1][4]}")
        finally:
            env.tear_down()
            drop_environment_database(env.database_url())
    right = sum((kind == "healthy") == (outcome == "promoted") for kind, outcome, *_ in rows)
    print(f"   right verdicts: {right}/{len(rows)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated rollouts per cell")
    parser.add_argument("--e2e", type=int, default=0, help="healthy and bad releases to deliver on the stack")
    parser.add_argument("--no-simulation", action="store_true", help="only the end-to-end part")
    args = parser.parse_args()
    if not args.no_simulation:
        simulation(args.runs)
    if args.e2e:
        end_to_end(args.e2e)


if __name__ == "__main__":
    main()
