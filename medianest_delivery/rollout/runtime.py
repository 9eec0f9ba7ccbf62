"""Where replicas run. `Runtime` is the interface the flows use.

`DockerRuntime` runs each replica as a container on one Docker Engine;
`SwarmRuntime` (rollout/swarm.py) runs each slot as a Swarm service. A
Kubernetes runtime would implement the same five methods; the flows do not
change. Every replica is hardened (non-root, read-only root filesystem, no
capabilities, memory, CPU and PID limits) and uses host networking on its own
127.0.0.1 port.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from medianest_delivery.errors import StackError

LABEL = "dev.medianest.delivery"


@dataclass(frozen=True)
class ReplicaSpec:
    environment: str
    component: str
    slot: str
    replica: int
    image: str  # repository@sha256:... : never a tag
    port: int
    version: str
    env: dict[str, str] = field(default_factory=dict)
    # Values a runtime must not put in the open (a database URL with its password): a Swarm secret mounted
    # at /run/secrets/<KEY> with <KEY>_FILE set; a plain engine has no secret store and passes them as variables.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    memory: str = "256m"
    cpus: float = 0.5

    @property
    def name(self) -> str:
        return f"mn-{self.environment}-{self.component}-{self.slot}{self.replica}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ReplicaInfo:
    name: str
    environment: str
    component: str
    slot: str
    replica: int
    image: str
    port: int
    version: str
    running: bool
    restarts: int


class Runtime(Protocol):
    def run_slot(self, specs: list[ReplicaSpec]) -> list[str]:
        """Run exactly these replicas of one slot (same environment, component, slot and release)."""
        ...

    def remove(self, environment: str, component: str | None = None, slot: str | None = None) -> list[str]: ...

    def list(self, environment: str) -> list[ReplicaInfo]: ...

    def kill(self, name: str) -> None: ...

    def logs(self, name: str, tail: int = 50) -> str: ...


# A replica forks nothing beyond its workers: a cap on processes stops a fork bomb (or a runaway pool) from
# exhausting the worker's PID space, which every other environment shares.
REPLICA_PIDS_LIMIT = 512


class DockerRuntime:
    """Replicas as containers on one Docker Engine (the local stack's by default)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def run_slot(self, specs: list[ReplicaSpec]) -> list[str]:
        return [self.run(spec) for spec in specs]

    def run(self, spec: ReplicaSpec) -> str:
        if "@sha256:" not in spec.image:
            raise StackError(f"refusing to run {spec.image}: images are deployed by digest only")
        self._remove_names([spec.name])
        container = self.client.containers.run(
            spec.image,
            name=spec.name,
            detach=True,
            network_mode="host",
            user="10001:10001",
            read_only=True,
            tmpfs={"/tmp": "size=16m,mode=1777"},  # noqa: S108 - a private tmpfs in the container
            security_opt=["no-new-privileges:true"],
            cap_drop=["ALL"],
            mem_limit=spec.memory,
            pids_limit=REPLICA_PIDS_LIMIT,
            nano_cpus=int(spec.cpus * 1e9),
            restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
            environment={
                **spec.env,
                **spec.secrets,
                "PORT": str(spec.port),
                "BIND_HOST": "127.0.0.1",
                "MEDIANEST_VERSION": spec.version,
            },
            labels={
                LABEL: "true",
                f"{LABEL}.environment": spec.environment,
                f"{LABEL}.component": spec.component,
                f"{LABEL}.slot": spec.slot,
                f"{LABEL}.replica": str(spec.replica),
                f"{LABEL}.version": spec.version,
                f"{LABEL}.port": str(spec.port),
            },
        )
        return str(container.id)

    def _containers(self, environment: str) -> list[Any]:
        return list(self.client.containers.list(all=True, filters={"label": [f"{LABEL}.environment={environment}"]}))

    def _remove_names(self, names: list[str]) -> None:
        import docker.errors

        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                self.client.containers.get(name).remove(force=True)

    def remove(self, environment: str, component: str | None = None, slot: str | None = None) -> list[str]:
        removed = []
        for container in self._containers(environment):
            labels = container.labels
            if component and labels.get(f"{LABEL}.component") != component:
                continue
            if slot and labels.get(f"{LABEL}.slot") != slot:
                continue
            container.remove(force=True)
            removed.append(container.name)
        return removed

    def list(self, environment: str) -> list[ReplicaInfo]:
        infos = []
        for container in self._containers(environment):
            labels = container.labels
            infos.append(
                ReplicaInfo(
                    name=container.name,
                    environment=environment,
                    component=labels[f"{LABEL}.component"],
                    slot=labels[f"{LABEL}.slot"],
                    replica=int(labels[f"{LABEL}.replica"]),
                    image=container.attrs["Config"]["Image"],
                    port=int(labels[f"{LABEL}.port"]),
                    version=labels[f"{LABEL}.version"],
                    running=container.status == "running",
                    restarts=int(container.attrs.get("RestartCount", 0)),
                )
            )
        return sorted(infos, key=lambda i: i.name)

    def kill(self, name: str) -> None:
        self.client.containers.get(name).kill()

    def logs(self, name: str, tail: int = 50) -> str:
        return str(self.client.containers.get(name).logs(tail=tail).decode(errors="replace"))


def wait_until_healthy(urls: list[str], paths: list[str], deadline_seconds: float) -> dict[str, str]:
    """Poll every url+path until 200 or the deadline; returns the failures (empty = healthy)."""
    pending = {f"{u}{p}" for u in urls for p in paths}
    last_error: dict[str, str] = {}
    deadline = time.monotonic() + deadline_seconds
    with httpx.Client(timeout=2) as client:
        while pending and time.monotonic() < deadline:
            for url in sorted(pending):
                try:
                    status = client.get(url).status_code
                except httpx.HTTPError as exc:
                    last_error[url] = type(exc).__name__
                    continue
                if status == 200:
                    pending.discard(url)
                    last_error.pop(url, None)
                else:
                    last_error[url] = f"HTTP {status}"
            if pending:
                time.sleep(0.25)
    return {url: last_error.get(url, "no answer") for url in sorted(pending)}
