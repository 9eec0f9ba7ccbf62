"""Middle tier: the rollout tasks and the canary loop against fakes behind the real interfaces.

The tasks in tasks/rollout.py and the strategies in flows/strategies.py run as
they do in `deliver` (Prefect task runs under the test harness); only the
outside systems are fakes: FakeRuntime (replicas are HTTP servers on loopback,
no containers), FakeRouter (state in memory instead of HAProxy) and
FakePrometheus (counters per slot instead of scrapes). No Docker, HAProxy or
Prometheus is needed, so these run in seconds and can fail only on our logic.
"""

from __future__ import annotations

import pytest

from blocks.delivery import MetricsProvider
from flows.strategies import RolloutContext, deploy_candidate, rollout_canary
from medianest_delivery.rollout.outcome import RolloutOutcome
from tasks.rollout import controller, reconcile_environment, rollback, set_traffic
from tests.fakes import SlotTraffic
from tests.tasks.conftest import IMAGE_V2, DownPrometheus, Fakes, in_a_flow


def test_healthy_canary_walks_every_step_and_is_promoted(fakes: Fakes) -> None:
    """Identical canary and stable: 10/30/50/100 through the router, every analysis recorded, then promoted."""
    fakes.prometheus.slots = {"a": SlotTraffic(), "b": SlotTraffic()}
    stable_before = fakes.stable_slot()
    outcome = in_a_flow(lambda: rollout_canary(fakes.ctx, "backend", IMAGE_V2, [10, 30, 50, 100]))
    assert outcome.action is RolloutOutcome.PROMOTED
    assert outcome.weights == [10, 30, 50, 100]
    assert outcome.promoted
    assert fakes.stable_slot() != stable_before  # roles flipped
    assert fakes.router.weights("backend")[fakes.stable_slot()] == 100
    metrics = {m["metric"] for m in fakes.ctx.measurements}
    assert metrics == {"error-rate", "error-vs-stable", "p95-latency", "latency-vs-stable", "critical-alerts"}
    assert {p["step"] for p in fakes.ctx.chart_points} == {1, 2, 3}


def test_failing_canary_is_rolled_back_at_the_first_step(fakes: Fakes) -> None:
    """Half the canary's requests fail: the loop stops at 10% with the error rate named; rollback empties its slot."""
    canary_slot = "a" if fakes.stable_slot() == "b" else "b"
    fakes.prometheus.slots = {fakes.stable_slot(): SlotTraffic(), canary_slot: SlotTraffic(error_ratio=0.5)}
    outcome = in_a_flow(lambda: rollout_canary(fakes.ctx, "backend", IMAGE_V2, [10, 30, 50, 100]))
    assert outcome.action is RolloutOutcome.ROLLED_BACK
    assert outcome.weights == [10]
    assert outcome.reason.startswith("step 1 at 10%: error-rate")
    in_a_flow(lambda: rollback(fakes.ctx.environment, fakes.ctx.app_config, "backend", False, fakes.ctx.docker_host))
    assert fakes.router.weights("backend") == {fakes.stable_slot(): 100, canary_slot: 0}
    assert all(spec.slot != canary_slot for spec, _ in fakes.runtime.replicas.values())
    assert fakes.router.drained[-1] == ("backend", canary_slot)  # drained before its replicas were removed


def test_metrics_outage_never_promotes(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prometheus unreachable: analyses are errors, held three times, then rolled back (never a pass on no data)."""
    down = DownPrometheus()
    monkeypatch.setattr(MetricsProvider, "get_client", lambda self: down)
    outcome = in_a_flow(lambda: rollout_canary(fakes.ctx, "backend", IMAGE_V2, [10, 30, 50, 100]))
    assert outcome.action is RolloutOutcome.ROLLED_BACK
    assert "unreachable" in outcome.reason
    errors = [m for m in fakes.ctx.measurements if m["phase"] == "error"]
    assert {m["analysis"] for m in errors} == {1, 2, 3}


def test_frozen_when_the_migration_cannot_be_undone(fakes: Fakes) -> None:
    """A failing canary whose release migrated backward-incompatibly freezes instead of rolling back."""
    canary_slot = "a" if fakes.stable_slot() == "b" else "b"
    fakes.prometheus.slots = {fakes.stable_slot(): SlotTraffic(), canary_slot: SlotTraffic(error_ratio=0.5)}
    ctx = RolloutContext(**{**vars(fakes.ctx), "backward_compatible": False})
    outcome = in_a_flow(lambda: rollout_canary(ctx, "backend", IMAGE_V2, [10, 30, 50, 100]))
    assert outcome.action is RolloutOutcome.FROZEN


def test_reconcile_takes_out_a_candidate_left_with_traffic(fakes: Fakes) -> None:
    """A rollout killed at 30% leaves the candidate routed; reconcile sends everything back to stable."""
    env = controller(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host)
    stable = env.stable_slot("backend")
    in_a_flow(
        lambda: (
            deploy_candidate(fakes.ctx, "backend", IMAGE_V2),
            set_traffic(fakes.ctx.environment, fakes.ctx.app_config, "backend", 30, 2, fakes.ctx.docker_host),
        )
    )
    actions = in_a_flow(
        lambda: reconcile_environment(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host)
    )
    assert any("interrupted rollout" in a and "backend" in a for a in actions), actions
    assert fakes.router.weights("backend")[stable] == 100
    assert {spec.slot for spec, _ in fakes.runtime.replicas.values() if spec.component == "backend"} == {stable}


def test_reconcile_restarts_missing_stable_replicas(fakes: Fakes) -> None:
    """A stable replica that died (host restart) is started again from the recorded release and health-checked."""
    victim = next(n for n, (s, _) in fakes.runtime.replicas.items() if s.component == "backend")
    fakes.runtime.kill(victim)
    actions = in_a_flow(
        lambda: reconcile_environment(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host)
    )
    assert any("restarted missing stable replicas of 1.0.0" in a for a in actions), actions
    assert victim in fakes.runtime.replicas


def test_reconcile_of_a_consistent_environment_does_nothing(fakes: Fakes) -> None:
    """Nothing interrupted, nothing missing: no action, no replica started."""
    started = list(fakes.runtime.started)
    assert (
        in_a_flow(lambda: reconcile_environment(fakes.ctx.environment, fakes.ctx.app_config, fakes.ctx.docker_host))
        == []
    )
    assert fakes.runtime.started == started
