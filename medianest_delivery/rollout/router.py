"""HAProxy as the router of one environment: config rendering (pure), process and runtime API (I/O).

The desired state (which slot is stable, each slot's share of traffic, active
replicas) is persisted as JSON before it is applied, and the config and map
files are re-rendered from it every time, so a restarted HAProxy comes back
with the same split.

Traffic is split by bucket, not by server weight: every request belongs to one
of 100 buckets (the client's `canary_bucket` cookie when it holds one, a random
bucket otherwise), and a map sends buckets below the canary's percent to the
canary slot. Moving from 10% to 30% only adds buckets to the canary, so a
client that keeps its cookie never flips back to the old version. The map
changes through the runtime API (prepare, fill, commit: one atomic swap), with
no reload and no dropped connection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from medianest_delivery.errors import StackError
from medianest_delivery.proc import process_runs, run_command, which_or_raise
from medianest_delivery.rollout.topology import MAX_REPLICAS, SLOTS, EnvironmentPlan, other_slot

BUCKETS = 100
CANARY_COOKIE = "canary_bucket"
Affinity = Literal["none", "cookie"]


@dataclass
class BackendState:
    """One component's traffic: both slots' servers, each slot's share (percent) and which slot is stable."""

    component: str
    router_port: int
    slot_ports: dict[str, list[int]]
    active_replicas: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SLOTS, 0))
    weights: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SLOTS, 0))  # percent of buckets
    stable_slot: str = "a"
    health_path: str = "/health"
    # "cookie": a client without a bucket cookie gets one, and keeps its version across canary steps.
    affinity: str = "none"
    # What each slot runs (image by digest, version, extra env): reconcile restarts from this.
    slot_releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    # True from `promote` until the rollout's verdict: the stable slot holds a release nobody
    # has judged yet and the other slot, still running, the last judged one (the rollback target).
    verdict_pending: bool = False

    def server_names(self, slot: str) -> list[str]:
        return [f"{slot}{i}" for i in range(len(self.slot_ports[slot]))]

    def canary_percent(self) -> int:
        return max(0, min(BUCKETS, self.weights[other_slot(self.stable_slot)]))


# 2: `weights` are each slot's percent of buckets. 1 (files with no schema): per-server HAProxy weights.
ROUTER_STATE_SCHEMA = 2


@dataclass
class RouterState:
    environment: str
    stats_port: int
    backends: dict[str, BackendState] = field(default_factory=dict)
    schema: int = ROUTER_STATE_SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RouterState:
        raw = json.loads(text)
        schema = raw.pop("schema", 1)
        backends = {name: BackendState(**b) for name, b in raw.pop("backends").items()}
        if schema < 2:
            for backend in backends.values():
                backend.weights = percent_from_server_weights(backend)
        return cls(backends=backends, **raw)


def percent_from_server_weights(backend: BackendState) -> dict[str, int]:
    """Each slot's share of traffic from a schema-1 state, whose weights were per server (HAProxy balanced on
    weight x active servers): a split of 20 and 180 over two servers each was 10% and 90%, not 20% and 100%."""
    load = {slot: backend.weights[slot] * backend.active_replicas[slot] for slot in SLOTS}
    total = sum(load.values())
    if total == 0:
        return {slot: (100 if slot == backend.stable_slot else 0) for slot in SLOTS}
    candidate = other_slot(backend.stable_slot)
    share = round(100 * load[candidate] / total)
    return {candidate: share, backend.stable_slot: 100 - share}


def new_backend(
    plan: EnvironmentPlan, component: str, index: int, health_path: str = "/health", affinity: Affinity = "none"
) -> BackendState:
    return BackendState(
        component=component,
        router_port=plan.router_port(index),
        slot_ports={slot: [plan.replica_port(index, slot, r) for r in range(MAX_REPLICAS)] for slot in SLOTS},
        health_path=health_path,
        affinity=affinity,
    )


def bucket_slots(backend: BackendState) -> list[str]:
    """The slot of each bucket: the first ``canary_percent`` buckets are the canary's, the rest stable's.

    Growing the canary only ever moves buckets from stable to canary, which is
    what keeps a cookie-holding client on one version from step to step.
    """
    canary = backend.canary_percent()
    candidate = other_slot(backend.stable_slot)
    return [candidate if bucket < canary else backend.stable_slot for bucket in range(BUCKETS)]


def render_map(backend: BackendState) -> str:
    return "".join(f"{bucket} {slot}\n" for bucket, slot in enumerate(bucket_slots(backend)))


def map_path(directory: Path, component: str) -> Path:
    return directory / f"{component}.map"


def render_haproxy_config(state: RouterState, admin_socket: Path, maps_dir: Path) -> str:
    """haproxy.cfg for the state: one frontend per component on 127.0.0.1, a stats/metrics frontend.

    Each component has one backend per slot; the frontend picks the slot from
    the request's bucket through the component's map. A slot with no usable
    server (its replicas failing their health checks, or not yet up) hands
    its buckets to the other slot rather than answer 503. ``retries`` with
    ``redispatch`` re-sends a request whose connection failed to another
    server of the slot; an idempotent request whose server closed the
    connection without answering is retried too. HTTP errors are never
    retried, so a bad canary's 500s still reach clients and metrics.
    """
    lines = [
        "global",
        f"    stats socket {admin_socket} mode 600 level admin",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    timeout http-keep-alive 5s",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "",
        "frontend stats",
        f"    bind 127.0.0.1:{state.stats_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "",
    ]
    for name, backend in sorted(state.backends.items()):
        routes = map_path(maps_dir, name)
        lines += [
            f"frontend fe_{name}",
            f"    bind 127.0.0.1:{backend.router_port}",
            "    http-request disable-l7-retry unless METH_GET || METH_HEAD",
            f"    http-request set-var(txn.pinned) bool(1) if {{ req.cook({CANARY_COOKIE}) -m reg ^[0-9]{{1,2}}$ }}",
            f"    http-request set-var(txn.bucket) req.cook({CANARY_COOKIE}) if {{ var(txn.pinned) -m bool }}",
            f"    http-request set-var(txn.bucket) rand({BUCKETS}) unless {{ var(txn.pinned) -m bool }}",
            f"    http-request set-var(txn.slot) var(txn.bucket),map_int({routes},{backend.stable_slot})",
        ]
        for slot in SLOTS:
            lines.append(
                f"    http-request set-var(txn.slot) str({other_slot(slot)})"
                f" if {{ var(txn.slot) -m str {slot} }} {{ nbsrv(be_{name}_{slot}) eq 0 }}"
            )
        lines += [f"    use_backend be_{name}_{slot} if {{ var(txn.slot) -m str {slot} }}" for slot in SLOTS]
        lines.append(f"    default_backend be_{name}_{backend.stable_slot}")
        if backend.affinity == "cookie":
            lines.append(
                f'    http-response add-header Set-Cookie "{CANARY_COOKIE}=%[var(txn.bucket)]; Path=/; HttpOnly;'
                ' SameSite=Lax" unless { var(txn.pinned) -m bool }'
            )
        lines.append("")
        for slot in SLOTS:
            lines += [
                f"backend be_{name}_{slot}",
                "    balance roundrobin",
                f"    option httpchk GET {backend.health_path}",
                "    http-check expect status 200",
                "    default-server inter 1s fall 2 rise 1",
            ]
            for i, port in enumerate(backend.slot_ports[slot]):
                active = i < backend.active_replicas[slot]
                lines.append(f"    server {slot}{i} 127.0.0.1:{port} check" + ("" if active else " disabled"))
            lines.append("")
    return "\n".join(lines)


def structural_digest(state: RouterState, admin_socket: Path, maps_dir: Path) -> str:
    """A digest of what a running HAProxy cannot change at run time: ports, backends, health checks, affinity.

    The split (maps), enabled servers and the stable slot change through the
    runtime API, so they are left out: a different digest means the process
    must be replaced to serve the state.
    """
    skeleton = RouterState.from_json(state.to_json())
    for backend in skeleton.backends.values():
        backend.active_replicas = dict.fromkeys(SLOTS, 0)
        backend.weights = dict.fromkeys(SLOTS, 0)
        backend.stable_slot, backend.slot_releases, backend.verdict_pending = "a", {}, False
    rendered = render_haproxy_config(skeleton, admin_socket, maps_dir)
    return hashlib.sha256(rendered.encode()).hexdigest()


def server_commands(backend: BackendState, active: bool) -> list[str]:
    """Runtime API commands that set the component's active servers ready (``active``) or the rest in maintenance."""
    commands = []
    for slot in SLOTS:
        for i, server in enumerate(backend.server_names(slot)):
            if (i < backend.active_replicas[slot]) == active:
                state = "ready" if active else "maint"
                commands.append(f"set server be_{backend.component}_{slot}/{server} state {state}")
    return commands


class Router(Protocol):
    """What an environment needs from its traffic router (HAProxy here; a fake in the middle-tier tests)."""

    def load_state(self) -> RouterState | None: ...

    def save_state(self, state: RouterState) -> None: ...

    def start(self, state: RouterState) -> None: ...

    def stop(self) -> bool: ...

    def apply(self, state: RouterState, components: list[str] | None = None) -> None: ...

    def wait_idle(self, component: str, slot: str, timeout_seconds: float) -> int: ...

    def remove_files(self) -> None: ...


class HAProxyRouter:
    """One HAProxy process per environment, with its files under ``root``."""

    def __init__(self, root: Path, environment: str) -> None:
        self.root = root
        self.environment = environment
        self.dir = root / environment
        self.state_path = self.dir / "desired-state.json"
        self.config_path = self.dir / "haproxy.cfg"
        self.socket_path = self.dir / "admin.sock"
        self.pid_path = self.dir / "haproxy.pid"
        # While a process running an outdated config is being replaced: its pid, until it is told to finish.
        self.outdated_pid_path = self.dir / "haproxy.pid.outdated"
        self.digest_path = self.dir / "haproxy.cfg.digest"  # structural_digest of what the process loaded

    def load_state(self) -> RouterState | None:
        if not self.state_path.is_file():
            return None
        return RouterState.from_json(self.state_path.read_text())

    def save_state(self, state: RouterState) -> None:
        """Persist first, then render: the files always describe the desired split."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.state_path, state.to_json())
        for name, backend in state.backends.items():
            _write_atomically(map_path(self.dir, name), render_map(backend))
        _write_atomically(self.config_path, render_haproxy_config(state, self.socket_path, self.dir))

    def argv(self, haproxy: str) -> list[str]:
        return [haproxy, "-db", "-f", str(self.config_path)]

    def pid(self) -> int | None:
        """The pid of *our* HAProxy: a stale pid file naming another process (pid reuse) gives None."""
        try:
            pid = int(self.pid_path.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid if process_runs(pid, self.argv("haproxy")) else None

    def running(self) -> bool:
        if self.pid() is None or not self.socket_path.exists():
            return False
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def start(self, state: RouterState) -> None:
        """Start HAProxy from the persisted state if it is not running (a restart restores the split).

        One that runs another structure (a new component, another health
        check or affinity, or a config from before the bucket maps) is
        replaced seamlessly: the new process binds beside it, then the old one
        is told to finish its connections and exit (HAProxy's soft stop,
        SIGUSR1). The old pid is recorded first, so a replacement cut short by
        a crash is finished by the next start or stop, never left serving.
        """
        self._finish_replacement()
        if self.running():
            if self._serves(state):
                return
            outdated = self.pid()
            if outdated is not None:
                self.outdated_pid_path.write_text(str(outdated))
            try:
                self._launch(state)
            except Exception:
                if outdated is not None:  # the old process keeps serving, as before
                    self.pid_path.write_text(str(outdated))
                self.outdated_pid_path.unlink(missing_ok=True)
                raise
            self._finish_replacement()
            return
        self._launch(state)

    def _serves(self, state: RouterState) -> bool:
        """Whether the running process loaded this state's structure (and the bucket maps)."""
        loaded = self.digest_path.read_text().strip() if self.digest_path.is_file() else ""
        if loaded != structural_digest(state, self.socket_path, self.dir):
            return False
        maps = self.command("show map")
        return all(str(map_path(self.dir, name)) in maps for name in state.backends)

    def _outdated_pid(self) -> int | None:
        try:
            pid = int(self.outdated_pid_path.read_text().strip())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            self.outdated_pid_path.unlink(missing_ok=True)
            return None
        return pid if pid != self.pid() and process_runs(pid, self.argv("haproxy")) else None

    def _finish_replacement(self, sig: int = signal.SIGUSR1) -> None:
        """Tell a replaced process to finish its connections and exit (SIGUSR1), or to stop now (SIGTERM)."""
        outdated = self._outdated_pid()
        if outdated is not None:
            os.kill(outdated, sig)
        self.outdated_pid_path.unlink(missing_ok=True)

    def _launch(self, state: RouterState) -> None:
        self.save_state(state)
        haproxy = which_or_raise("haproxy", "Install Debian's haproxy (make deps).")
        run_command([haproxy, "-c", "-q", "-f", str(self.config_path)])
        log = (self.dir / "haproxy.log").open("ab")
        process = subprocess.Popen(
            self.argv(haproxy),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid_path.write_text(str(process.pid))
        self.digest_path.write_text(structural_digest(state, self.socket_path, self.dir))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"haproxy for {self.environment} exited; see {self.dir / 'haproxy.log'}")
            if self.running() and self._serves(state):
                return
            time.sleep(0.1)
        process.kill()  # never leave a half-started process bound beside the one that serves
        raise StackError(f"haproxy for {self.environment} did not open {self.socket_path}")

    def stop(self) -> bool:
        self._finish_replacement(signal.SIGTERM)
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self.pid_path.unlink(missing_ok=True)
        return True

    def command(self, text: str) -> str:
        """One runtime-API exchange; commands joined by ';' run in order in one exchange."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(text.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def remove_files(self) -> None:
        """Its config, state and sockets: for an environment torn down for good (a preview)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def apply(self, state: RouterState, components: list[str] | None = None) -> None:
        """Persist ``state`` then push it to the live process through the runtime API.

        In the order that never sends a request to a server that cannot take
        it: servers that gain traffic are made ready first, then each map is
        swapped in one commit, and only then are the servers that lost their
        traffic put in maintenance (their requests in flight still finish).
        """
        self.save_state(state)
        if not self.running():
            self.start(state)
            return
        chosen = [b for name, b in sorted(state.backends.items()) if not components or name in components]
        self._run([c for b in chosen for c in server_commands(b, active=True)])
        for backend in chosen:
            self._commit_map(backend)
        self._run([c for b in chosen for c in server_commands(b, active=False)])

    def _run(self, commands: list[str]) -> None:
        if not commands:
            return
        reply = self.command(";".join(commands))
        problems = [line for line in reply.splitlines() if line.strip() and ("No such" in line or "nknown" in line)]
        if problems:
            raise StackError(f"haproxy {self.environment} refused: {problems}; restart it to load the new config")

    def _commit_map(self, backend: BackendState) -> None:
        """Replace the component's bucket map in one atomic step (prepare a new version, fill it, commit it).

        The additions go in exchanges of 25 (one line of 100 would outgrow
        HAProxy's command buffer with a long state path); the committed map is
        read back, so a refused command can never pass unnoticed.
        """
        routes = map_path(self.dir, backend.component)
        reply = self.command(f"prepare map {routes}")
        version = reply.strip().rsplit(":", 1)[-1].strip()
        if not version.isdigit():
            raise StackError(f"haproxy {self.environment}: cannot prepare map {routes}: {reply.strip()}")
        wanted = bucket_slots(backend)
        adds = [f"add map @{version} {routes} {bucket} {slot}" for bucket, slot in enumerate(wanted)]
        for start in range(0, len(adds), 25):
            self._run(adds[start : start + 25])
        self._run([f"commit map @{version} {routes}"])
        live = self.live_routes(backend.component)
        if live != wanted:
            raise StackError(f"haproxy {self.environment}: map {routes} holds {live}, not {wanted}")

    def live_routes(self, component: str) -> list[str]:
        """The slot of each bucket in the running HAProxy (``show map``)."""
        routes: dict[int, str] = {}
        for line in self.command(f"show map {map_path(self.dir, component)}").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1].isdigit():
                routes[int(parts[1])] = parts[2]
        return [routes.get(bucket, "") for bucket in range(BUCKETS)]

    def server_states(self, component: str) -> dict[str, str]:
        """Live status by server (``a0``: ``UP``, ``MAINT``, ...) from ``show stat``."""
        return {server: row["status"] for server, row in self._server_rows(component).items()}

    def _server_rows(self, component: str) -> dict[str, dict[str, str]]:
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        result = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            proxy, server = values.get("pxname", ""), values.get("svname")
            if proxy in {f"be_{component}_{slot}" for slot in SLOTS} and server not in (None, "FRONTEND", "BACKEND"):
                result[str(server)] = values
        return result

    def wait_idle(self, component: str, slot: str, timeout_seconds: float) -> int:
        """Wait until no request is in flight or queued on the slot's servers; returns those left at the timeout.

        Called after the slot lost its traffic and before its replicas are
        removed, so that no answer being written is cut off.
        """
        deadline = time.monotonic() + timeout_seconds
        while True:
            rows = [r for name, r in self._server_rows(component).items() if name.startswith(slot)]
            busy = sum(int(r.get("scur") or 0) + int(r.get("qcur") or 0) for r in rows)
            if busy == 0 or time.monotonic() >= deadline:
                return busy
            time.sleep(0.05)

    def metrics_url(self, state: RouterState) -> str:
        return f"http://127.0.0.1:{state.stats_port}/metrics"

    def healthy(self, state: RouterState) -> bool:
        try:
            return httpx.get(self.metrics_url(state), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
