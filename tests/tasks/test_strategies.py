"""Middle tier: a production rollout (flows/strategies.roll_out) always ends on a judged release, whatever raises.

Faults are injected at each step through the fakes' interfaces (the runtime,
the router, the metrics source, the judge); after each, traffic must be on the
last judged release, nothing unjudged may hold weight, and the result must say
why. Also the crash case: a run that dies after `promote` and before the
verdict leaves `verdict_pending`, and the next reconcile returns to the judged
release instead of removing it (issue 11, item 5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import tasks.rollout
from blocks.delivery import MetricsProvider
from flows.strategies import RolloutResult, deploy_candidate, roll_out
from medianest_delivery.errors import StackError
from medianest_delivery.rollout.outcome import RolloutOutcome
from tasks.rollout import controller, promote, reconcile_environment
from tests.fakes import FakePrometheus, SlotTraffic
from tests.tasks.conftest import IMAGE_V2, Fakes, in_a_flow

STEPS = [10, 30, 50, 100]


def judged_slot(f: Fakes) -> str:
    return f.stable_slot()


def roll(f: Fakes, monitoring_seconds: float = 1.0) -> RolloutResult:
    return in_a_flow(lambda: roll_out(f.ctx, ["backend"], {"backend": IMAGE_V2}, "canary", STEPS, monitoring_seconds))


def healthy(f: Fakes) -> None:
    f.prometheus.slots = {"a": SlotTraffic(), "b": SlotTraffic()}


def assert_back_on(f: Fakes, slot: str, version: str = "1.0.0") -> None:
    """All traffic on `slot`, which runs `version`; nothing else of the component runs or is pending."""
    state = controller(f.ctx.environment, f.ctx.app_config, f.ctx.docker_host).state().backends["backend"]
    assert state.stable_slot == slot
    assert f.router.weights("backend") == {slot: 100, ("a" if slot == "b" else "b"): 0}
    assert not state.verdict_pending
    assert state.slot_releases[slot]["version"] == version
    assert {s.slot for s, _ in f.runtime.replicas.values() if s.component == "backend"} == {slot}


class Boom(RuntimeError):
    """An unexpected fault (a Docker API error, a socket error, a bug)."""


def fail_on_call(original: Callable[..., Any], call: int, exc: Exception) -> Callable[..., Any]:
    """Wrap `original` so that its `call`-th invocation raises `exc` (earlier and later ones go through)."""
    count = {"n": 0}

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        count["n"] += 1
        if count["n"] == call:
            raise exc
        return original(*args, **kwargs)

    return wrapper


def test_healthy_rollout_is_promoted_and_the_old_slot_decommissioned(fakes: Fakes) -> None:
    """The baseline: no fault, promoted, verdict recorded (nothing pending), previous slot gone."""
    healthy(fakes)
    old = judged_slot(fakes)
    result = roll(fakes)
    assert result.failure is None
    new = "a" if old == "b" else "b"
    assert_back_on(fakes, new, "2.0.0")


def test_docker_fault_while_starting_the_candidate(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runtime fails on the candidate's second replica: no traffic ever moves, the half-started slot is gone."""
    healthy(fakes)
    old = judged_slot(fakes)
    monkeypatch.setattr(fakes.runtime, "run", fail_on_call(fakes.runtime.run, 2, Boom("docker: 500 Server Error")))
    result = roll(fakes)
    assert result.failure is not None
    assert result.failure.action is RolloutOutcome.ROLLED_BACK
    assert "Boom: docker: 500 Server Error" in result.failure.reason
    assert_back_on(fakes, old)


def test_router_fault_in_the_middle_of_the_canary(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HAProxy socket fails when moving to 30%: the canary's 10% is taken back, stable serves alone."""
    healthy(fakes)
    old = judged_slot(fakes)
    applied = len(fakes.router.applied)
    # apply calls from here: 10% (1), 30% (2) -> fault on the second; the recovery's own calls go through.
    monkeypatch.setattr(
        fakes.router, "apply", fail_on_call(fakes.router.apply, 2, StackError("admin.sock: broken pipe"))
    )
    result = roll(fakes)
    assert result.failure is not None
    assert "StackError: admin.sock: broken pipe" in result.failure.reason
    assert len(fakes.router.applied) > applied  # the canary really had traffic before the fault
    assert_back_on(fakes, old)


def test_garbled_metrics_are_measurements_not_crashes(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus answering garbage (not JSON) is an analysis error: held, then rolled back, never promoted."""

    class Garbled(FakePrometheus):
        def query(self, expr: str, at: float | None = None) -> list:  # type: ignore[type-arg]
            from medianest_delivery.errors import MetricsUnavailableError

            raise MetricsUnavailableError("prometheus answered something that is not JSON: '<html>'")

    monkeypatch.setattr(MetricsProvider, "get_client", lambda self: Garbled())
    old = judged_slot(fakes)
    result = roll(fakes)
    assert result.failure is not None
    assert "not JSON" in result.failure.reason
    assert not result.fault  # a normal verdict, not a fault
    assert_back_on(fakes, old)


def test_statistics_fault_rolls_back(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The judge itself raising (say, a negative cell after a counter reset) ends on the judged release."""
    healthy(fakes)
    old = judged_slot(fakes)
    monkeypatch.setattr(
        tasks.rollout,
        "assess_canary_step",
        fail_on_call(tasks.rollout.assess_canary_step, 2, ValueError("fisher_exact: negative cell")),
    )
    result = roll(fakes)
    assert result.failure is not None
    assert "ValueError: fisher_exact: negative cell" in result.failure.reason
    assert_back_on(fakes, old)


def test_fault_during_the_monitoring_window_after_promotion(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Promoted, then the window's analysis raises: the unjudged release is switched back, not left at 100%."""
    healthy(fakes)
    old = judged_slot(fakes)
    # Step analyses for 10/30/50 each pass at once (3 calls); the 4th is the monitoring window's.
    monkeypatch.setattr(
        tasks.rollout, "assess_canary_step", fail_on_call(tasks.rollout.assess_canary_step, 4, Boom("judge crashed"))
    )
    result = roll(fakes)
    assert result.failure is not None
    assert "Boom: judge crashed" in result.failure.reason
    assert "had no verdict; back on judged release 1.0.0" in result.failure.reason
    assert_back_on(fakes, old)


def test_run_that_died_after_promote_is_reconciled_to_the_judged_release(fakes: Fakes) -> None:
    """Regression (issue 11.5): a run killed after `promote` left the unjudged release at 100%; reconcile removed the
    old, judged slot as if it were an interrupted candidate. Now it switches back to the judged one."""
    old = judged_slot(fakes)
    in_a_flow(
        lambda: (
            deploy_candidate(fakes.ctx, "backend", IMAGE_V2),
            promote(fakes.ctx.environment, fakes.ctx.app_config, "backend", fakes.ctx.docker_host),
        )
    )  # ... and the run dies here, before its monitoring window decides
    actions = in_a_flow(
        lambda: reconcile_environment(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host)
    )
    assert actions == ["backend: promoted release 2.0.0 had no verdict; back on judged release 1.0.0"]
    assert_back_on(fakes, old)


def test_fault_while_decommissioning_keeps_the_release_that_passed(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict passed; a fault removing the old slot must not undo the promotion of the judged new release."""
    healthy(fakes)
    old = judged_slot(fakes)
    new = "a" if old == "b" else "b"
    original = fakes.runtime.remove

    def remove(environment: str, component: str | None = None, slot: str | None = None) -> list[str]:
        if slot == old and component == "backend":
            raise Boom("docker: container busy")
        return original(environment, component, slot)

    monkeypatch.setattr(fakes.runtime, "remove", remove)
    result = roll(fakes)
    monkeypatch.setattr(fakes.runtime, "remove", original)
    assert result.fault.startswith("Boom: docker: container busy")
    state = controller(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host).state().backends["backend"]
    assert state.stable_slot == new
    assert fakes.router.weights("backend")[new] == 100
    assert not state.verdict_pending


def test_monitoring_window_with_no_data_is_not_healthy(fakes: Fakes) -> None:
    """Regression (issue 11.6): a window that saw no requests at all ended "healthy"; now it is no evidence and the
    promoted release goes back to the judged one."""
    old = judged_slot(fakes)
    fakes.prometheus.slots = {}  # nothing scraped, nothing routed
    result = in_a_flow(lambda: roll_out(fakes.ctx, ["backend"], {"backend": IMAGE_V2}, "blue-green", STEPS, 1.0))
    assert result.failure is not None
    assert "no evidence" in result.failure.reason
    assert_back_on(fakes, old)


def test_replicas_that_died_after_their_health_check_fail_on_what_clients_saw(fakes: Fakes) -> None:
    """The new slot serves nothing (its app metrics are silent) while HAProxy answers 503 itself: the router's
    counters fail the window and traffic goes back to the judged release."""
    old = judged_slot(fakes)
    fakes.prometheus.slots = {old: SlotTraffic(rate=0.0)}
    fakes.prometheus.router_own_errors_per_second = 500.0
    result = in_a_flow(lambda: roll_out(fakes.ctx, ["backend"], {"backend": IMAGE_V2}, "blue-green", STEPS, 2.0))
    assert result.failure is not None
    assert "router-errors" in result.failure.reason
    assert "router responses were 5xx" in result.failure.reason
    assert_back_on(fakes, old)


def test_a_zero_window_is_an_explicit_opt_out(fakes: Fakes) -> None:
    """monitoring_seconds=0 (previews, rollbacks to a judged release) skips the window: promoted without data."""
    fakes.prometheus.slots = {}
    result = in_a_flow(lambda: roll_out(fakes.ctx, ["backend"], {"backend": IMAGE_V2}, "blue-green", STEPS, 0.0))
    assert result.failure is None


def test_fault_decommissioning_one_component_keeps_every_component_that_passed(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (review): with two components, a fault removing the first one's old slot left the second one
    `verdict_pending`, and recovery sent it back to the previous release while the rollout was reported promoted.
    Now every verdict is recorded before any slot is removed."""
    from flows.strategies import RolloutContext, deploy_directly

    frontend_v1 = "127.0.0.1:5000/fake/frontend@sha256:" + "3" * 64
    frontend_v2 = "127.0.0.1:5000/fake/frontend@sha256:" + "4" * 64
    in_a_flow(
        lambda: deploy_directly(RolloutContext(**{**vars(fakes.ctx), "version": "1.0.0"}), "frontend", frontend_v1)
    )
    healthy(fakes)
    env = controller(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host)
    old_backend = env.stable_slot("backend")
    original = fakes.runtime.remove

    def remove(environment: str, component: str | None = None, slot: str | None = None) -> list[str]:
        if component == "backend" and slot == old_backend:
            raise Boom("docker: container busy")
        return original(environment, component, slot)

    monkeypatch.setattr(fakes.runtime, "remove", remove)
    result = in_a_flow(
        lambda: roll_out(
            fakes.ctx, ["backend", "frontend"], {"backend": IMAGE_V2, "frontend": frontend_v2}, "canary", STEPS, 1.0
        )
    )
    monkeypatch.setattr(fakes.runtime, "remove", original)
    assert result.failure is None
    assert result.fault.startswith("Boom")
    state = controller(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host).state()
    for component in ("backend", "frontend"):
        backend = state.backends[component]
        assert not backend.verdict_pending, component
        assert backend.slot_releases[backend.stable_slot]["version"] == "2.0.0", component
