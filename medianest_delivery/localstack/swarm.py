"""A real two-node Docker Swarm on loopback, for staging (and any environment configured to use it).

Two more dockerds, each with its own socket, data root and exec root under
``$STATE/swarm/<node>``, no bridge and no iptables. The manager advertises
127.0.0.1, the worker 127.0.0.2. The ``ingress`` overlay network is removed
right after init: services use the host network only, and nothing here may
create or reach a bridge or overlay network.
"""

from __future__ import annotations

import time
from typing import Any

from medianest_delivery.errors import StackError
from medianest_delivery.localstack.component import ComponentStatus
from medianest_delivery.localstack.processes import DockerEngine
from medianest_delivery.settings import StackSettings

NODE_ADDRESSES = {"manager": "127.0.0.1", "worker": "127.0.0.2"}
SWARM_PORT = 2377
NODES_READY_SECONDS = 60.0


class SwarmNodeEngine(DockerEngine):
    """The dockerd of one local Swarm node."""

    def __init__(self, settings: StackSettings, node: str) -> None:
        super().__init__(settings)
        self.node = node
        self.name = f"swarm-{node}"

    @property
    def root(self) -> Any:
        return self.settings.swarm_dir / self.node

    def where(self) -> str:
        return self.settings.swarm_node_host(self.node)

    def argv(self) -> list[str]:
        argv = super().argv()
        self.root.mkdir(parents=True, exist_ok=True)
        keep = [a for a in argv if not a.startswith(("--data-root=", "--exec-root=", "--pidfile=", "--host="))]
        return [
            *keep,
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--pidfile={self.root / 'dockerd.pid'}",
            f"--host={self.where()}",
        ]

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.where(), timeout=30)


class LocalSwarm:
    """Stack component ``swarm``: the two node engines, the swarm they form, and nothing else."""

    name = "swarm"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.manager = SwarmNodeEngine(settings, "manager")
        self.worker = SwarmNodeEngine(settings, "worker")

    def _nodes(self, manager: Any) -> list[Any]:
        return list(manager.nodes.list())

    def status(self) -> ComponentStatus:
        where = self.manager.where()
        ours = self.manager.our_pid() is not None
        if not (self.manager.probe() and self.worker.probe()):
            return ComponentStatus(self.name, False, where, ours, "node engines not answering")
        try:
            manager = self.manager.client()
            ready = [n for n in self._nodes(manager) if n.attrs["Status"]["State"] == "ready"]
        except Exception as exc:  # noqa: BLE001 - any failure is "not a working swarm"
            return ComponentStatus(self.name, False, where, ours, f"no swarm: {type(exc).__name__}")
        detail = f"{len(ready)} nodes ready (manager 127.0.0.1, worker 127.0.0.2)"
        return ComponentStatus(self.name, len(ready) == len(NODE_ADDRESSES), where, ours, detail)

    def start(self) -> None:
        self.manager.start()
        self.worker.start()
        manager = self.manager.client()
        if manager.info()["Swarm"]["LocalNodeState"] != "active":
            manager.swarm.init(
                advertise_addr=NODE_ADDRESSES["manager"],
                listen_addr=f"{NODE_ADDRESSES['manager']}:{SWARM_PORT}",
                data_path_addr=NODE_ADDRESSES["manager"],
            )
        for network in manager.networks.list(names=["ingress"]):
            network.remove()  # host networking only: no overlay network may exist
        self._join_worker(manager)
        self._wait_ready(manager)

    def _join_worker(self, manager: Any) -> None:
        worker = self.worker.client()
        swarm = worker.info()["Swarm"]
        known = {n.id for n in self._nodes(manager)}
        if swarm["LocalNodeState"] == "active" and swarm["NodeID"] in known:
            return
        if swarm["LocalNodeState"] != "inactive":
            worker.swarm.leave(force=True)  # a member of a swarm that no longer exists (the manager was wiped)
        for node in self._nodes(manager):
            # A worker wiped or re-joined leaves its old record behind, down for good: forget it.
            if node.attrs["Spec"]["Role"] == "worker" and node.attrs["Status"]["State"] == "down":
                node.remove(force=True)
        manager.swarm.reload()
        worker.swarm.join(
            remote_addrs=[f"{NODE_ADDRESSES['manager']}:{SWARM_PORT}"],
            join_token=manager.swarm.attrs["JoinTokens"]["Worker"],
            listen_addr=f"{NODE_ADDRESSES['worker']}:{SWARM_PORT}",
            advertise_addr=NODE_ADDRESSES["worker"],
            data_path_addr=NODE_ADDRESSES["worker"],
        )

    def _wait_ready(self, manager: Any) -> None:
        deadline = time.monotonic() + NODES_READY_SECONDS
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = {
                n.attrs["Description"]["Hostname"] + "/" + n.id[:6]: n.attrs["Status"]["State"]
                for n in self._nodes(manager)
            }
            if sum(1 for s in states.values() if s == "ready") >= len(NODE_ADDRESSES):
                return
            time.sleep(0.5)
        raise StackError(f"the local Swarm's nodes are not ready within {NODES_READY_SECONDS:.0f}s: {states}")

    def stop(self) -> bool:
        return any([self.worker.stop(), self.manager.stop()])
