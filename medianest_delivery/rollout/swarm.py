"""Replicas as Docker Swarm services: one service per slot of a component, placed by the Swarm.

`mn-<environment>-<component>-<slot>` runs the slot's replicas; HAProxy still
decides the weights. Services use the host network only, so each task needs
its own port: the service sets ``PORT=<prefix>{{.Task.Slot}}`` and task slot
``r+1`` is replica ``r`` on ``<prefix><r+1>`` (the topology's layout). Values
a replica must not see in the open (the database URL with its password) are
Swarm secrets, mounted at ``/run/secrets/<KEY>`` with ``<KEY>_FILE`` set: no
service spec, ``docker inspect`` or task environment holds them.

A manager that restarts (or has lost its leader for a moment) is waited for
(``MANAGER_WAIT_SECONDS``), so a rollout step never fails on a blip.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from medianest_delivery.errors import StackError
from medianest_delivery.rollout.runtime import LABEL, REPLICA_PIDS_LIMIT, ReplicaInfo, ReplicaSpec

MANAGER_WAIT_SECONDS = 90.0
# How long removed services' containers may take to stop (their ports must be free for the next slot).
REMOVAL_WAIT_SECONDS = 60.0
SECRET_PREFIX = "mn-secret-"
TASKS_WAIT_SECONDS = 30.0
logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _manager_unavailable(exc: Exception) -> bool:
    """A manager that is restarting, has no leader yet, or cannot be reached: worth waiting for."""
    import docker.errors
    import requests

    if isinstance(exc, docker.errors.APIError):  # the manager answered: only "no leader yet" heals by waiting
        text = str(exc).lower()
        return (exc.status_code or 0) in (502, 503) or "leader" in text or "not a swarm manager" in text
    if isinstance(exc, requests.exceptions.SSLError | docker.errors.TLSParameterError | docker.errors.InvalidArgument):
        return False  # a wrong CA, certificate or argument does not heal by waiting
    return isinstance(exc, requests.exceptions.ConnectionError | docker.errors.DockerException)


def _waits_for_manager(method: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        runtime = args[0]
        assert isinstance(runtime, SwarmRuntime)
        deadline = time.monotonic() + runtime.manager_wait_seconds
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if not _manager_unavailable(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise StackError(
                        f"the Swarm manager at {runtime.manager} did not answer within "
                        f"{runtime.manager_wait_seconds:.0f}s: {type(exc).__name__}: {exc}"
                    ) from exc
                logger.warning("Swarm manager %s unavailable (%s); waiting", runtime.manager, type(exc).__name__)
                runtime.reset_client()
                time.sleep(1.0)

    return wrapper


def service_name(environment: str, component: str, slot: str) -> str:
    return f"mn-{environment}-{component}-{slot}"


def port_prefix(specs: list[ReplicaSpec]) -> str:
    """The prefix the task slot completes into each replica's port; the specs must follow the layout."""
    prefix = specs[0].port // 10
    for spec in specs:
        if spec.port != prefix * 10 + spec.replica + 1:
            raise StackError(
                f"{spec.name}: port {spec.port} is not {prefix}{spec.replica + 1}; a Swarm service makes replica r's "
                "port from a prefix and task slot r+1 (ports …1-…4 of the slot's block)"
            )
    if sorted(s.replica for s in specs) != list(range(len(specs))):
        raise StackError(f"{specs[0].environment}/{specs[0].component}: replicas must be 0..{len(specs) - 1}")
    return str(prefix)


def secret_name(environment: str, key: str, value: str) -> str:
    """Swarm secrets are immutable: a new value is a new secret, named by its digest (never by the value)."""
    digest = hashlib.sha256(f"{environment}\0{key}\0{value}".encode()).hexdigest()[:40]
    return f"{SECRET_PREFIX}{digest}"


class SwarmRuntime:
    """The `Runtime` on a Docker Swarm. ``connect`` gives a client of a manager; ``node_hosts`` are the nodes'
    own engines (for kill and logs of one replica, and to wait for removed containers); ``registry_auth``
    (user, password, registry host) is forwarded to the nodes for pulls, as ``--with-registry-auth`` does."""

    def __init__(
        self,
        connect: Callable[[], Any],
        manager: str,
        registry_auth: tuple[str, str, str] | None = None,
        node_hosts: list[str] | None = None,
        manager_wait_seconds: float = MANAGER_WAIT_SECONDS,
    ) -> None:
        self._connect = connect
        self.manager = manager
        self.registry_auth = registry_auth
        self.node_hosts = list(node_hosts or [])
        self.manager_wait_seconds = manager_wait_seconds
        self._client: Any = None
        self._nodes: dict[str, Any] = {}
        self._node_hosts_by_id: dict[str, str] = {}

    # -- connections -----------------------------------------------------------
    @property
    def client(self) -> Any:
        """Connected on first use: building a runtime never touches the network."""
        if self._client is None:
            client = self._connect()
            if self.registry_auth:
                user, password, registry = self.registry_auth
                client.login(username=user, password=password, registry=registry)
            self._client = client
        return self._client

    def reset_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:
                logger.debug("closing the Swarm client failed", exc_info=True)
        self._client = None

    def _node_clients(self) -> dict[str, Any]:
        """Node id -> a client of that node's engine, for the nodes that answer (kept for this runtime's life)."""
        import docker

        clients: dict[str, Any] = {}
        for node_id, client in list(self._nodes.items()):
            try:
                client.ping()
                clients[node_id] = client
            except Exception:  # noqa: BLE001 - gone since: asked again below
                client.close()
                del self._nodes[node_id]
        known = {self._node_hosts_by_id.get(node_id) for node_id in clients}
        for host in self.node_hosts:
            if host in known:
                continue
            client = None
            try:
                client = docker.DockerClient(base_url=host, timeout=5)
                node_id = client.info()["Swarm"]["NodeID"]
            except Exception:  # noqa: BLE001 - a node that is down has no containers to reach
                if client is not None:
                    client.close()
                continue
            if node_id:
                clients[node_id] = client
                self._nodes[node_id] = client
                self._node_hosts_by_id[node_id] = host
            else:
                client.close()
        return clients

    # -- the Runtime interface -------------------------------------------------
    @_waits_for_manager
    def run_slot(self, specs: list[ReplicaSpec]) -> list[str]:
        from docker import types
        from docker.utils import parse_bytes

        if not specs:
            return []
        first = specs[0]
        for spec in specs:
            if "@sha256:" not in spec.image:
                raise StackError(f"refusing to run {spec.image}: images are deployed by digest only")
        prefix = port_prefix(specs)
        name = service_name(first.environment, first.component, first.slot)
        references = [self._secret_reference(first.environment, key, value) for key, value in first.secrets.items()]
        env = {
            **first.env,
            **{f"{key}_FILE": f"/run/secrets/{key}" for key in first.secrets},
            "PORT": f"{prefix}{{{{.Task.Slot}}}}",
            "BIND_HOST": "127.0.0.1",
            "MEDIANEST_VERSION": first.version,
        }
        labels = {
            LABEL: "true",
            f"{LABEL}.environment": first.environment,
            f"{LABEL}.component": first.component,
            f"{LABEL}.slot": first.slot,
            f"{LABEL}.version": first.version,
            f"{LABEL}.port-prefix": prefix,
        }
        container = types.ContainerSpec(
            first.image,
            env=[f"{k}={v}" for k, v in env.items()],
            user="10001:10001",
            labels=labels,
            read_only=True,
            mounts=[types.Mount("/tmp", None, type="tmpfs", tmpfs_size=16 * 1024**2, tmpfs_mode=0o1777)],  # noqa: S108 - the replica's private tmpfs
            secrets=references,
            cap_drop=["ALL"],
            stop_grace_period=10 * 10**9,
        )
        resources = types.Resources(cpu_limit=int(first.cpus * 1e9), mem_limit=parse_bytes(first.memory))
        resources["Limits"]["Pids"] = REPLICA_PIDS_LIMIT  # API 1.41; docker-py has no argument for it
        template = types.TaskTemplate(
            container,
            resources=resources,
            restart_policy=types.RestartPolicy(condition="any", delay=10**9),
            networks=["host"],
        )
        # One task at a time, the old one stopped first (a task's port is fixed by its slot), back on failure.
        update = types.UpdateConfig(parallelism=1, order="stop-first", failure_action="rollback", monitor=10**10)
        rollback = types.RollbackConfig(parallelism=1, order="stop-first", monitor=10**10)
        self._remove_services([s for s in self._services(first.environment) if s.name == name])
        service = self._create_service(name, labels, template, len(specs), update, rollback)
        self._wait_for_tasks(service, len(specs))
        return [f"{name}{spec.replica}" for spec in specs]

    def _wait_for_tasks(self, service_id: str, replicas: int) -> None:
        """The orchestrator makes a new service's tasks a moment after `create`: wait until every slot has one,
        so that `list` (the scrape targets, reconcile) sees the replicas as soon as this returns."""
        deadline = time.monotonic() + TASKS_WAIT_SECONDS
        service = self.client.services.get(service_id)
        while time.monotonic() < deadline:
            if len(self._current_tasks(service)) >= replicas:
                return
            time.sleep(0.2)
        raise StackError(
            f"Swarm service {service.name} has no task for each of its {replicas} replicas after "
            f"{TASKS_WAIT_SECONDS:.0f}s"
        )

    def _create_service(
        self, name: str, labels: dict[str, str], template: Any, replicas: int, update: Any, rollback: Any
    ) -> str:
        from docker import types

        created = self.client.api.create_service(
            template,
            name=name,
            labels=labels,
            mode=types.ServiceMode("replicated", replicas=replicas),
            update_config=update,
            rollback_config=rollback,
        )
        return str(created["ID"])

    def _secret_reference(self, environment: str, key: str, value: str) -> Any:
        from docker import types

        name = secret_name(environment, key, value)
        existing = [s for s in self.client.secrets.list(filters={"name": name}) if s.name == name]
        secret = (
            existing[0]
            if existing
            else self.client.secrets.create(
                name=name, data=value.encode(), labels={LABEL: "true", f"{LABEL}.environment": environment}
            )
        )
        return types.SecretReference(secret.id, name, filename=key, uid="10001", gid="10001", mode=0o400)

    def _services(self, environment: str, component: str | None = None, slot: str | None = None) -> list[Any]:
        wanted = [f"{LABEL}.environment={environment}"]
        if component:
            wanted.append(f"{LABEL}.component={component}")
        if slot:
            wanted.append(f"{LABEL}.slot={slot}")
        return list(self.client.services.list(filters={"label": wanted}))

    def _remove_services(self, services: list[Any]) -> list[str]:
        import docker.errors

        ids = {s.id for s in services}
        for service in services:
            try:
                service.remove()
            except docker.errors.NotFound:
                continue
        if ids:
            self._wait_containers_gone(ids)
        return [s.name for s in services]

    def _wait_containers_gone(self, service_ids: set[str]) -> None:
        """Removing a service returns at once; its containers still hold their ports until they stop."""
        deadline = time.monotonic() + REMOVAL_WAIT_SECONDS
        clients = list(self._node_clients().values())
        while clients and time.monotonic() < deadline:
            left = 0
            for client in clients:
                try:
                    found = client.containers.list(all=True, filters={"label": "com.docker.swarm.service.id"})
                except Exception:  # noqa: BLE001, S112 - a node going down takes its containers with it
                    continue
                left += sum(1 for c in found if c.labels.get("com.docker.swarm.service.id") in service_ids)
            if not left:
                return
            time.sleep(0.25)
        if clients:
            logger.warning(
                "containers of removed services %s still exist after %.0fs", service_ids, REMOVAL_WAIT_SECONDS
            )

    @_waits_for_manager
    def remove(self, environment: str, component: str | None = None, slot: str | None = None) -> list[str]:
        import docker.errors

        removed = self._remove_services(self._services(environment, component, slot))
        # Secrets of this environment that no service uses any more (one in use refuses removal).
        for secret in self.client.secrets.list(filters={"label": f"{LABEL}.environment={environment}"}):
            try:
                secret.remove()
            except docker.errors.APIError:
                continue
        return removed

    def _current_tasks(self, service: Any) -> dict[int, dict[str, Any]]:
        """Task slot -> the task the Swarm wants running there (the newest), with how many came before it."""
        by_slot: dict[int, list[dict[str, Any]]] = {}
        for task in service.tasks():
            by_slot.setdefault(int(task.get("Slot", 0)), []).append(task)
        current: dict[int, dict[str, Any]] = {}
        for slot, tasks in by_slot.items():
            tasks.sort(key=lambda t: t["Version"]["Index"])
            wanted = [t for t in tasks if t.get("DesiredState") == "running"]
            if wanted:
                current[slot] = {**wanted[-1], "_earlier": len(tasks) - 1}
        return current

    @_waits_for_manager
    def list(self, environment: str) -> list[ReplicaInfo]:
        infos = []
        for service in self._services(environment):
            labels = service.attrs["Spec"]["Labels"]
            image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            prefix = labels[f"{LABEL}.port-prefix"]
            for task_slot, task in self._current_tasks(service).items():
                replica = task_slot - 1
                infos.append(
                    ReplicaInfo(
                        name=f"{service.name}{replica}",
                        environment=environment,
                        component=labels[f"{LABEL}.component"],
                        slot=labels[f"{LABEL}.slot"],
                        replica=replica,
                        image=image,
                        port=int(f"{prefix}{task_slot}"),
                        version=labels[f"{LABEL}.version"],
                        running=task["Status"]["State"] == "running",
                        restarts=task["_earlier"],
                    )
                )
        return sorted(infos, key=lambda i: i.name)

    def _task_of(self, name: str) -> dict[str, Any]:
        service, replica = name[:-1], int(name[-1])
        found = [s for s in self.client.services.list(filters={"name": service}) if s.name == service]
        if not found:
            raise StackError(f"no Swarm service {service} for replica {name}")
        task = self._current_tasks(found[0]).get(replica + 1)
        if task is None:
            raise StackError(f"replica {name}: the Swarm has no task in slot {replica + 1}")
        return task

    def _container_of(self, name: str) -> Any:
        task = self._task_of(name)
        container_id = task["Status"].get("ContainerStatus", {}).get("ContainerID")
        client = self._node_clients().get(task.get("NodeID", ""))
        if not container_id or client is None:
            raise StackError(f"replica {name}: its container (node {task.get('NodeID', '?')}) cannot be reached")
        return client.containers.get(container_id)

    @_waits_for_manager
    def kill(self, name: str) -> None:
        self._container_of(name).kill()

    @_waits_for_manager
    def logs(self, name: str, tail: int = 50) -> str:
        try:
            container = self._container_of(name)
        except StackError as exc:
            return str(exc)
        return str(container.logs(tail=tail).decode(errors="replace"))
