"""The analysis loop of one canary step: assess every interval until the judge decides.

The loop only sequences; each assessment comes from a `StepAssessor` (in the
flow, a Prefect task querying Prometheus; in tests, a scripted fake) and each
decision from `decide_action`. Like Argo Rollouts, an analysis that errors is a
measurement, not an exception: errors in a row hold the step, then roll back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from medianest_delivery.rollout.analysis import StepAssessment
from medianest_delivery.rollout.judge import Action, CanaryThresholds, Phase, decide_action, traffic_shortfall


class StepAssessor(Protocol):
    def __call__(self, analysis: int) -> StepAssessment: ...


@dataclass(frozen=True)
class LoopVerdict:
    action: Action
    reasons: list[str]
    analyses: int
    passed: int = 0  # analyses that PASSED: evidence, as opposed to a window that merely ran out


def analyse_until_decided(
    assess: StepAssessor,
    thresholds: CanaryThresholds,
    *,
    backward_compatible: bool,
    interval_seconds: float,
    max_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> LoopVerdict:
    """Assess after every interval until pass, fail or a limit.

    With `max_seconds` (a monitoring window) a pass does not end the loop: the
    window runs to its end and any failure in it decides; it ends with
    NEXT_STEP only when nothing went wrong, and `passed` says how many analyses
    gave evidence.

    Worked example, thresholds with max_consecutive_errors=3: phases
    INCONCLUSIVE, ERROR, ERROR, PASSED give NEXT_STEP after 4 analyses (errors
    that stop before the limit only hold the step); ERROR, ERROR, ERROR give
    ROLLBACK after 3.
    """
    errors_in_a_row = analysis = passed = 0
    started = clock()
    deadline = None if max_seconds is None else started + max_seconds
    while True:
        sleep(interval_seconds)
        analysis += 1
        result = assess(analysis)
        passed += result.phase is Phase.PASSED
        errors_in_a_row = errors_in_a_row + 1 if result.phase is Phase.ERROR else 0
        # A window has its own end; a step has a deadline that traffic may not let it meet.
        shortfall = (
            traffic_shortfall(result.outlook, clock() - started, thresholds)
            if deadline is None and result.phase is Phase.INCONCLUSIVE
            else None
        )
        action = decide_action(result.phase, errors_in_a_row, thresholds, not backward_compatible, shortfall)
        if action is Action.NEXT_STEP and deadline is not None:
            action = Action.WAIT  # a window is judged to its end, not to its first pass
        if action is not Action.WAIT:
            reasons = [shortfall] if shortfall else result.reasons
            reasons = reasons or [f"{result.phase.value} after {analysis} analyses"]
            return LoopVerdict(action, reasons, analysis, passed)
        if deadline is not None and clock() > deadline:
            return LoopVerdict(Action.NEXT_STEP, [], analysis, passed)  # window over with nothing wrong
