"""The analysis loop of one canary step, driven by scripted assessments (no time passes: fake sleep and clock)."""

from __future__ import annotations

import pytest

from medianest_delivery.rollout.analysis import ChartPoint, StepAssessment
from medianest_delivery.rollout.canary_loop import LoopVerdict, analyse_until_decided
from medianest_delivery.rollout.judge import Action, CanaryThresholds, Phase, VerdictOutlook

P, F, W, E = Phase.PASSED, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR  # W: wait (inconclusive)


class Script:
    """Hands out one scripted phase per analysis and counts the virtual seconds slept."""

    def __init__(
        self, phases: list[Phase], outlook: VerdictOutlook | None = None, thresholds: CanaryThresholds | None = None
    ) -> None:
        self.phases = phases
        self.now = 0.0
        self.outlook = outlook
        self.thresholds = thresholds or CanaryThresholds()

    def __call__(self, analysis: int) -> StepAssessment:
        phase = self.phases[analysis - 1]
        reasons = [f"scripted {phase.value} #{analysis}"] if phase in (F, E) else []
        outlook = self.outlook if phase is W else None
        return StepAssessment(phase, reasons, [], 100, ChartPoint(None, None, None, None), outlook)

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now

    def run(self, backward_compatible: bool = True, interval: float = 2.0, window: float | None = None) -> LoopVerdict:
        """The loop driven by this script, on its virtual clock."""
        return analyse_until_decided(
            self,
            self.thresholds,
            backward_compatible=backward_compatible,
            interval_seconds=interval,
            max_seconds=window,
            sleep=self.sleep,
            clock=self.clock,
        )


@pytest.mark.parametrize(
    ("name", "phases", "backward_compatible", "action", "analyses"),
    [
        ("pass at once", [P], True, Action.NEXT_STEP, 1),
        ("waits, then passes", [W, W, P], True, Action.NEXT_STEP, 3),
        ("errors below the limit only hold", [E, E, P], True, Action.NEXT_STEP, 3),
        ("three errors in a row roll back", [E, E, E], True, Action.ROLLBACK, 3),
        ("an error streak broken by a wait starts over", [E, E, W, E, E, P], True, Action.NEXT_STEP, 6),
        ("fail rolls back", [W, F], True, Action.ROLLBACK, 2),
        ("fail freezes a one-way migration", [F], False, Action.FREEZE, 1),
        ("waits with no projection give up at the step's 1200 s deadline", [W] * 700, True, Action.ROLLBACK, 600),
    ],
)
def test_loop_decides(name: str, phases: list[Phase], backward_compatible: bool, action: Action, analyses: int) -> None:
    """Each scripted sequence of phases ends in the judge's action after the expected number of analyses."""
    script = Script(phases)
    verdict = script.run(backward_compatible=backward_compatible)
    assert (verdict.action, verdict.analyses) == (action, analyses), name
    assert script.now == 2.0 * analyses  # one interval before every analysis


def test_failure_reasons_come_from_the_deciding_analysis() -> None:
    """The verdict carries the reasons of the analysis that decided, for the history and the artifact."""
    script = Script([W, F])
    verdict = script.run(interval=1)
    assert verdict.reasons == ["scripted failed #2"]


def test_a_window_that_sees_nothing_wrong_ends_at_its_deadline() -> None:
    """Monitoring windows (max_seconds) end with NEXT_STEP once time is up, even while still inconclusive."""
    script = Script([W] * 9)
    verdict = script.run(window=5.0)
    assert verdict.action is Action.NEXT_STEP
    assert verdict.analyses == 3  # at 2, 4 and 6 s; the window closed at 5 s


def test_a_window_is_judged_to_its_end_not_to_its_first_pass() -> None:
    """Regression (review): a monitoring window stopped at its first passing analysis, so a release that went bad
    later in the window was never judged. Now a failure anywhere in the window decides."""
    script = Script([P, P, F, P, P, P])
    verdict = script.run(window=11.0)
    assert verdict.action is Action.ROLLBACK
    assert verdict.analyses == 3
    assert verdict.passed == 2


def test_a_healthy_window_counts_its_evidence() -> None:
    """A window with nothing wrong ends at its deadline and reports how many analyses passed."""
    script = Script([P] * 9)
    verdict = script.run(window=7.0)
    assert (verdict.action, verdict.analyses, verdict.passed) == (Action.NEXT_STEP, 4, 4)


TRICKLE = VerdictOutlook(
    canary_requests=40, requests_needed=1000, requests_per_second=0.5, waiting_for=["error-rate"], seconds=80
)


def test_a_step_that_cannot_reach_a_verdict_in_time_says_so_at_once_with_the_numbers() -> None:
    """Regression (issue 12.4): a trickle of traffic was rolled back as "inconclusive" after the fact. Now the
    first projection past the deadline ends the step, and the reason names the rate, the requests and the time."""
    verdict = Script([W] * 400, outlook=TRICKLE).run()
    assert (verdict.action, verdict.analyses) == (Action.ROLLBACK, 1)
    assert verdict.reasons == [
        "insufficient traffic: error-rate need ~1000 more canary requests (40 so far, 0.50 req/s): ~2000 s"
        " (at best 1491 s), 1198 s left of the step's 1200 s"
    ]


def test_the_extend_policy_waits_for_the_evidence_it_projects() -> None:
    """insufficient_traffic="extend": the same trickle keeps the step open (up to max_extended_seconds)."""
    extend = CanaryThresholds(insufficient_traffic="extend")
    verdict = Script([W] * 300 + [P], outlook=TRICKLE, thresholds=extend).run()
    assert (verdict.action, verdict.analyses) == (Action.NEXT_STEP, 301)


def test_a_monitoring_window_is_bounded_by_its_own_end_not_by_traffic() -> None:
    """A window (max_seconds) ends at its end; a projection never cuts it short."""
    verdict = Script([W] * 9, outlook=TRICKLE).run(window=5.0)
    assert verdict.action is Action.NEXT_STEP
