"""Port plans, release order, preview allocation, HAProxy config and runtime commands, loopback guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.appconfig import Component
from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.loadgen import require_loopback
from medianest_delivery.rollout.router import RouterState, new_backend, render_haproxy_config, runtime_commands
from medianest_delivery.rollout.topology import (
    PREVIEW_COUNT,
    allocate_preview,
    environment_plan,
    other_slot,
    release_order,
)


def test_production_ports() -> None:
    plan = environment_plan("production")
    assert (plan.router_port(0), plan.replica_port(0, "a", 0), plan.replica_port(0, "b", 3)) == (19000, 19010, 19023)
    assert plan.router_port(1) == 19100
    assert plan.stats_port == 19990
    assert other_slot("a") == "b"


@pytest.mark.parametrize(
    ("name", "message"),
    [("qa", "unknown environment"), ("preview-", "unknown environment"), ("preview-x", "needs a port block")],
)
def test_bad_environments(name: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        environment_plan(name)


def test_replica_bounds() -> None:
    with pytest.raises(ConfigError, match="replica 4 out of range"):
        environment_plan("staging").replica_port(0, "a", 4)
    with pytest.raises(ConfigError, match="unknown slot"):
        environment_plan("staging").replica_port(0, "c", 0)


def test_preview_allocation_reuses_and_fills_gaps() -> None:
    allocations = allocate_preview("preview-a", {})
    allocations = allocate_preview("preview-b", allocations)
    assert allocate_preview("preview-a", allocations) == {"preview-a": 0, "preview-b": 1}
    del allocations["preview-a"]
    assert allocate_preview("preview-c", allocations)["preview-c"] == 0
    full = {f"preview-{i}": i for i in range(PREVIEW_COUNT)}
    with pytest.raises(ConfigError, match="port blocks are in use"):
        allocate_preview("preview-new", full)
    assert environment_plan("preview-b", 1).base_port == 31000


def component(name: str, depends_on: list[str] | None = None) -> Component:
    return Component(name=name, port=80, depends_on=depends_on or [])


@pytest.mark.parametrize(
    ("name", "components", "expected"),
    [
        ("frontend after backend", [component("frontend", ["backend"]), component("backend")], ["backend", "frontend"]),
        ("independent keep order", [component("b"), component("a")], ["b", "a"]),
        ("chain", [component("c", ["b"]), component("b", ["a"]), component("a")], ["a", "b", "c"]),
    ],
)
def test_release_order(name: str, components: list[Component], expected: list[str]) -> None:
    assert [c.name for c in release_order(components)] == expected


def test_release_order_rejects_cycles() -> None:
    with pytest.raises(ConfigError, match="dependency cycle"):
        release_order([component("a", ["b"]), component("b", ["a"])])


def test_haproxy_config_binds_loopback_and_reflects_weights() -> None:
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
    backend = new_backend(environment_plan("production"), "backend", 0)
    backend.active_replicas = {"a": 1, "b": 0}
    backend.weights = {"a": 100, "b": 0}
    commands = runtime_commands(backend)
    assert commands[:2] == ["set server be_backend/a0 state ready", "set weight be_backend/a0 100"]
    assert "set server be_backend/b0 state maint" in commands
    assert len(commands) == 2 * 8


def test_router_state_round_trips_json() -> None:
    plan = environment_plan("production")
    state = RouterState("production", plan.stats_port, {"backend": new_backend(plan, "backend", 0)})
    state.backends["backend"].slot_releases["a"] = {"image": "r/x@sha256:" + "0" * 64, "version": "1"}
    assert RouterState.from_json(state.to_json()) == state


@pytest.mark.parametrize(
    "url", ["http://203.0.113.5/", "http://198.51.100.7:80/x", "http://example.com/"]
)  # documentation ranges
def test_load_generator_refuses_non_loopback(url: str) -> None:
    with pytest.raises(ConfigError, match="not on loopback"):
        require_loopback(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:19000/api", "http://127.8.9.10/", "http://[::1]:80/", "http://localhost/"]
)
def test_load_generator_accepts_loopback(url: str) -> None:
    assert require_loopback(url) == url
