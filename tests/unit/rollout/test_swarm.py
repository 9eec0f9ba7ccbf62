"""The Swarm runtime's own rules: template ports, secret names, and which failures mean "wait for the manager"."""

from __future__ import annotations

import docker.errors
import pytest
import requests

from medianest_delivery.errors import StackError
from medianest_delivery.rollout import swarm
from medianest_delivery.rollout.runtime import ReplicaSpec
from medianest_delivery.rollout.swarm import SwarmRuntime, port_prefix, secret_name, service_name
from medianest_delivery.rollout.topology import environment_plan


def spec(replica: int, port: int) -> ReplicaSpec:
    return ReplicaSpec("staging", "backend", "a", replica, "r/x@sha256:" + "0" * 64, port, "1.0.0")


def test_the_topology_ports_are_a_prefix_and_the_task_slot() -> None:
    plan = environment_plan("staging")
    specs = [spec(r, plan.replica_port(0, "a", r)) for r in range(4)]
    assert port_prefix(specs) == "1801"
    assert [int(f"{port_prefix(specs)}{r + 1}") for r in range(4)] == [s.port for s in specs]
    assert service_name("staging", "backend", "b") == "mn-staging-backend-b"


def test_ports_from_the_old_layout_cannot_be_made_by_a_template() -> None:
    with pytest.raises(StackError, match="port 18010 is not 18011"):
        port_prefix([spec(0, 18010), spec(1, 18011)])


def test_replicas_must_be_the_first_n() -> None:
    with pytest.raises(StackError, match=r"replicas must be 0\.\.1"):
        port_prefix([spec(0, 18011), spec(2, 18013)])


def test_a_secret_is_named_by_a_digest_never_by_its_value() -> None:
    url = "postgresql://app:s3cret@127.0.0.1:5432/db"
    name = secret_name("staging", "DATABASE_URL", url)
    assert name.startswith("mn-secret-")
    assert len(name) == len("mn-secret-") + 40
    assert "s3cret" not in name
    assert secret_name("staging", "DATABASE_URL", url + "x") != name  # a new password is a new secret
    assert secret_name("production", "DATABASE_URL", url) != name


@pytest.mark.parametrize(
    ("error", "waits"),
    [
        (requests.exceptions.ConnectionError("refused"), True),
        (docker.errors.DockerException("Error while fetching server API version"), True),
        (docker.errors.APIError("503 Server Error", explanation="rpc error: The swarm does not have a leader"), True),
        (docker.errors.APIError("This node is not a swarm manager."), True),
        (docker.errors.APIError("invalid argument"), False),
        (requests.exceptions.SSLError("certificate verify failed"), False),
        (docker.errors.TLSParameterError("no client certificate"), False),
        (docker.errors.NotFound("no such service"), False),
        (ValueError("bug"), False),
    ],
)
def test_which_failures_mean_the_manager_is_away(error: Exception, waits: bool) -> None:
    assert swarm._manager_unavailable(error) is waits


class Flaky:
    """A manager that refuses ``failures`` connections, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.connects = 0

    def __call__(self) -> object:
        self.connects += 1
        if self.connects <= self.failures:
            raise requests.exceptions.ConnectionError("connection refused")
        return self

    class services:
        @staticmethod
        def list(filters: dict[str, object]) -> list[object]:
            return []

    class secrets:
        @staticmethod
        def list(filters: dict[str, object]) -> list[object]:
            return []

    def close(self) -> None:
        """Nothing to close."""


def test_an_operation_waits_for_a_restarting_manager_then_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm.time, "sleep", lambda seconds: None)
    manager = Flaky(failures=3)
    runtime = SwarmRuntime(manager, "unix:///manager.sock", manager_wait_seconds=60)
    assert runtime.list("staging") == []
    assert manager.connects == 4


def test_a_manager_that_never_comes_back_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(swarm.time, "sleep", lambda seconds: None)
    runtime = SwarmRuntime(Flaky(failures=10**6), "unix:///manager.sock", manager_wait_seconds=0)
    with pytest.raises(StackError, match=r"the Swarm manager at unix:///manager.sock did not answer within 0s"):
        runtime.remove("staging")


def test_building_a_runtime_touches_no_network() -> None:
    manager = Flaky(failures=0)
    SwarmRuntime(manager, "tcp://swarm-manager.example:2376")
    assert manager.connects == 0
