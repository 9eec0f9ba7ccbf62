"""HAProxy configuration, bucket maps and runtime commands rendered from the router's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.rollout.router import (
    BUCKETS,
    RouterState,
    bucket_slots,
    new_backend,
    render_haproxy_config,
    render_map,
    server_commands,
)
from medianest_delivery.rollout.topology import environment_plan


def test_haproxy_config_binds_loopback_and_routes_buckets_through_the_map() -> None:
    """Every bind is on 127.0.0.1; one backend per slot, inactive servers disabled; the slot comes from the map."""
    plan = environment_plan("staging")
    backend = new_backend(plan, "backend", 0)
    backend.active_replicas = {"a": 2, "b": 1}
    backend.weights = {"a": 90, "b": 10}
    state = RouterState("staging", plan.stats_port, {"backend": backend})
    config = render_haproxy_config(state, Path("/run/admin.sock"), Path("/run/maps"))
    assert "bind 127.0.0.1:18000" in config
    assert "bind 127.0.0.1:18990" in config
    assert "backend be_backend_a\n" in config
    assert "backend be_backend_b\n" in config
    assert "server a0 127.0.0.1:18011 check\n" in config
    assert "server a2 127.0.0.1:18013 check disabled" in config
    assert "server b0 127.0.0.1:18021 check\n" in config
    assert "map_int(/run/maps/backend.map,a)" in config
    assert "Set-Cookie" not in config  # affinity "none": no cookie handed out
    assert "prometheus-exporter" in config
    assert all("bind 127.0.0.1:" in line for line in config.splitlines() if line.strip().startswith("bind"))


def test_cookie_affinity_hands_out_the_clients_bucket() -> None:
    """A component with cookie affinity sets canary_bucket for clients that do not send a valid one."""
    plan = environment_plan("staging")
    state = RouterState("staging", plan.stats_port, {"frontend": new_backend(plan, "frontend", 1, affinity="cookie")})
    config = render_haproxy_config(state, Path("/run/admin.sock"), Path("/run/maps"))
    assert 'Set-Cookie "canary_bucket=%[var(txn.bucket)]' in config
    assert "unless { var(txn.pinned) -m bool }" in config


@pytest.mark.parametrize("steps", [[10, 30, 50, 100], [1, 2, 99], [25, 75, 100]])
def test_growing_canary_steps_never_move_a_bucket_back_to_stable(steps: list[int]) -> None:
    """Each step only adds buckets to the canary, so a cookie-holding client flips at most once (stable to canary)."""
    backend = new_backend(environment_plan("production"), "backend", 0)
    backend.stable_slot = "a"
    seen: list[list[str]] = []
    for percent in steps:
        backend.weights = {"b": percent, "a": 100 - percent}
        seen.append(bucket_slots(backend))
    for bucket in range(BUCKETS):
        history = [slots[bucket] for slots in seen]
        assert history == sorted(history)  # "a" (stable) then "b" (canary), never back
    assert [slots.count("b") for slots in seen] == steps


def test_map_file_lists_every_bucket_once() -> None:
    """The rendered map holds one line per bucket: its number and its slot."""
    backend = new_backend(environment_plan("production"), "backend", 0)
    backend.stable_slot, backend.weights = "b", {"a": 30, "b": 70}
    lines = render_map(backend).splitlines()
    assert len(lines) == BUCKETS
    assert [lines[0], lines[29], lines[30], lines[-1]] == ["0 a", "29 a", "30 b", "99 b"]


def test_server_commands_ready_the_active_servers_and_maintain_the_rest() -> None:
    """Active servers are set ready (before the map moves traffic), the others put in maintenance (after)."""
    backend = new_backend(environment_plan("production"), "backend", 0)
    backend.active_replicas = {"a": 1, "b": 0}
    assert server_commands(backend, active=True) == ["set server be_backend_a/a0 state ready"]
    idle = server_commands(backend, active=False)
    assert "set server be_backend_b/b0 state maint" in idle
    assert len(idle) == 7


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


def test_a_state_file_from_before_bucket_routing_is_read_as_shares() -> None:
    """A schema-1 state held per-server weights (20 and 180 over two servers each: 10% to the canary); read today
    it gives each slot its share, not 20% (and 100% for 100/50 over 1 and 2 servers would be 50%)."""
    import json

    plan = environment_plan("production")
    old = RouterState("production", plan.stats_port, {"backend": new_backend(plan, "backend", 0)})
    backend = old.backends["backend"]
    backend.stable_slot, backend.active_replicas, backend.weights = "a", {"a": 2, "b": 2}, {"a": 180, "b": 20}
    raw = json.loads(old.to_json())
    del raw["schema"]
    read = RouterState.from_json(json.dumps(raw)).backends["backend"]
    assert read.weights == {"b": 10, "a": 90}
    backend.active_replicas, backend.weights = {"a": 2, "b": 1}, {"a": 50, "b": 100}
    raw = json.loads(old.to_json())
    del raw["schema"]
    assert RouterState.from_json(json.dumps(raw)).backends["backend"].weights == {"b": 50, "a": 50}
    assert RouterState.from_json(old.to_json()).backends["backend"].weights == {"a": 50, "b": 100}  # schema 2


def test_the_structural_digest_ignores_the_split_and_sees_the_structure() -> None:
    """Moving traffic keeps the digest (the runtime API does it); a new affinity or health path changes it
    (the running HAProxy must be replaced to serve it)."""
    from medianest_delivery.rollout.router import structural_digest

    plan = environment_plan("staging")
    state = RouterState("staging", plan.stats_port, {"frontend": new_backend(plan, "frontend", 1)})

    def digest() -> str:
        return structural_digest(state, Path("/run/admin.sock"), Path("/run/maps"))

    before = digest()
    backend = state.backends["frontend"]
    backend.active_replicas, backend.weights, backend.stable_slot = {"a": 2, "b": 2}, {"a": 70, "b": 30}, "b"
    assert digest() == before
    backend.affinity = "cookie"
    assert digest() != before
