"""HAProxy configuration and runtime commands rendered from the router's state."""

from __future__ import annotations

from pathlib import Path

from medianest_delivery.rollout.router import RouterState, new_backend, render_haproxy_config, runtime_commands
from medianest_delivery.rollout.topology import environment_plan


def test_haproxy_config_binds_loopback_and_reflects_weights() -> None:
    """Every bind is on 127.0.0.1; active servers carry their slot's weight, inactive ones are disabled."""
    plan = environment_plan("staging")
    backend = new_backend(plan, "backend", 0)
    backend.active_replicas = {"a": 2, "b": 1}
    backend.weights = {"a": 90, "b": 20}
    state = RouterState("staging", plan.stats_port, {"backend": backend})
    config = render_haproxy_config(state, Path("/run/admin.sock"))
    assert "bind 127.0.0.1:18000" in config
    assert "bind 127.0.0.1:18990" in config
    assert "server a0 127.0.0.1:18010 weight 90 check\n" in config + "\n"
    assert "server a2 127.0.0.1:18012 weight 90 check disabled" in config
    assert "server b0 127.0.0.1:18020 weight 20 check\n" in config + "\n"
    assert "prometheus-exporter" in config
    assert all("bind 127.0.0.1:" in line for line in config.splitlines() if line.strip().startswith("bind"))


def test_runtime_commands_enable_active_and_drain_the_rest() -> None:
    """Active servers are set ready with their weight, the rest put in maintenance: two commands per server."""
    backend = new_backend(environment_plan("production"), "backend", 0)
    backend.active_replicas = {"a": 1, "b": 0}
    backend.weights = {"a": 100, "b": 0}
    commands = runtime_commands(backend)
    assert commands[:2] == ["set server be_backend/a0 state ready", "set weight be_backend/a0 100"]
    assert "set server be_backend/b0 state maint" in commands
    assert len(commands) == 2 * 8


def test_router_state_round_trips_json() -> None:
    """A router state, slot releases included, survives to_json and from_json unchanged."""
    plan = environment_plan("production")
    state = RouterState("production", plan.stats_port, {"backend": new_backend(plan, "backend", 0)})
    state.backends["backend"].slot_releases["a"] = {"image": "r/x@sha256:" + "0" * 64, "version": "1"}
    assert RouterState.from_json(state.to_json()) == state


def test_stale_pid_file_is_never_signalled(tmp_path: Path) -> None:
    """A router pid file naming a process that is not our HAProxy (pid reuse) is ignored: stop signals nothing."""
    import os

    from medianest_delivery.rollout.router import HAProxyRouter

    router = HAProxyRouter(tmp_path, "preview-stale")
    router.dir.mkdir(parents=True)
    router.pid_path.write_text(str(os.getpid()))  # this test process, not haproxy
    assert router.pid() is None
    assert router.stop() is False
