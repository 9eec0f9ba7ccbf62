"""HAProxy as the router of one environment: config rendering (pure), process and runtime API (I/O).

The desired state (which slot is stable, per-server weights, active replicas)
is persisted as JSON before it is applied, and the config file is re-rendered
from it every time, so a restarted HAProxy comes back with the same split.
Weights change through the runtime API on the admin socket: no reload, no
dropped connections.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from medianest_delivery.errors import StackError
from medianest_delivery.proc import process_runs, run_command, which_or_raise
from medianest_delivery.rollout.topology import MAX_REPLICAS, SLOTS, EnvironmentPlan


@dataclass
class BackendState:
    """One component's pool: both slots' servers, their weights and which slot is stable."""

    component: str
    router_port: int
    slot_ports: dict[str, list[int]]
    active_replicas: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SLOTS, 0))
    weights: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SLOTS, 0))
    stable_slot: str = "a"
    health_path: str = "/health"
    # What each slot runs (image by digest, version, extra env): reconcile restarts from this.
    slot_releases: dict[str, dict[str, Any]] = field(default_factory=dict)
    # True from `promote` until the rollout's verdict: the stable slot holds a release nobody
    # has judged yet and the other slot, still running, the last judged one (the rollback target).
    verdict_pending: bool = False

    def server_names(self, slot: str) -> list[str]:
        return [f"{slot}{i}" for i in range(len(self.slot_ports[slot]))]


@dataclass
class RouterState:
    environment: str
    stats_port: int
    backends: dict[str, BackendState] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RouterState:
        raw = json.loads(text)
        backends = {name: BackendState(**b) for name, b in raw.pop("backends").items()}
        return cls(backends=backends, **raw)


def new_backend(plan: EnvironmentPlan, component: str, index: int, health_path: str = "/health") -> BackendState:
    return BackendState(
        component=component,
        router_port=plan.router_port(index),
        slot_ports={slot: [plan.replica_port(index, slot, r) for r in range(MAX_REPLICAS)] for slot in SLOTS},
        health_path=health_path,
    )


def render_haproxy_config(state: RouterState, admin_socket: Path) -> str:
    """haproxy.cfg for the state: one frontend per component on 127.0.0.1, a stats/metrics frontend.

    ``retries`` with ``redispatch`` re-sends a request whose connection failed
    to another server (a replica that just stopped); HTTP errors are never
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
        "",
        "frontend stats",
        f"    bind 127.0.0.1:{state.stats_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "",
    ]
    for name, backend in sorted(state.backends.items()):
        lines += [
            f"frontend fe_{name}",
            f"    bind 127.0.0.1:{backend.router_port}",
            f"    default_backend be_{name}",
            "",
            f"backend be_{name}",
            "    balance roundrobin",
            f"    option httpchk GET {backend.health_path}",
            "    http-check expect status 200",
            "    default-server inter 1s fall 2 rise 1",
        ]
        for slot in SLOTS:
            for i, port in enumerate(backend.slot_ports[slot]):
                active = i < backend.active_replicas[slot]
                lines.append(
                    f"    server {slot}{i} 127.0.0.1:{port} weight {backend.weights[slot]} check"
                    + ("" if active else " disabled")
                )
        lines.append("")
    return "\n".join(lines)


def runtime_commands(backend: BackendState) -> list[str]:
    """Runtime API commands that make live HAProxy match ``backend`` (weights, enabled servers)."""
    commands = []
    for slot in SLOTS:
        for i, server in enumerate(backend.server_names(slot)):
            address = f"be_{backend.component}/{server}"
            if i < backend.active_replicas[slot]:
                commands += [f"set server {address} state ready", f"set weight {address} {backend.weights[slot]}"]
            else:
                commands += [f"set weight {address} 0", f"set server {address} state maint"]
    return commands


class Router(Protocol):
    """What an environment needs from its traffic router (HAProxy here; a fake in the middle-tier tests)."""

    def load_state(self) -> RouterState | None: ...

    def save_state(self, state: RouterState) -> None: ...

    def start(self, state: RouterState) -> None: ...

    def stop(self) -> bool: ...

    def apply(self, state: RouterState, components: list[str] | None = None) -> None: ...

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

    def load_state(self) -> RouterState | None:
        if not self.state_path.is_file():
            return None
        return RouterState.from_json(self.state_path.read_text())

    def save_state(self, state: RouterState) -> None:
        """Persist first, then render: the files always describe the desired split."""
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.state_path)
        self.config_path.write_text(render_haproxy_config(state, self.socket_path))

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
        """Start HAProxy from the persisted state if it is not running (a restart restores the split)."""
        if self.running():
            return
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
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(f"haproxy for {self.environment} exited; see {self.dir / 'haproxy.log'}")
            if self.running():
                return
            time.sleep(0.1)
        raise StackError(f"haproxy for {self.environment} did not open {self.socket_path}")

    def stop(self) -> bool:
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
        """Persist ``state`` then push it to the live process through the runtime API."""
        self.save_state(state)
        if not self.running():
            self.start(state)
            return
        commands = [
            c for name, b in state.backends.items() if not components or name in components for c in runtime_commands(b)
        ]
        if commands:
            reply = self.command(";".join(commands))
            problems = [line for line in reply.splitlines() if line.strip() and "No such" in line]
            if problems:
                raise StackError(f"haproxy {self.environment} refused: {problems}; restart it to load the new config")

    def server_weights(self) -> dict[str, int]:
        """Live weights by ``backend/server`` from ``show stat``."""
        rows = self.command("show stat").splitlines()
        header = rows[0].lstrip("# ").split(",")
        weights = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            if values.get("svname") not in (None, "FRONTEND", "BACKEND"):
                weights[f"{values['pxname']}/{values['svname']}"] = int(values.get("weight") or 0)
        return weights

    def metrics_url(self, state: RouterState) -> str:
        return f"http://127.0.0.1:{state.stats_port}/metrics"

    def healthy(self, state: RouterState) -> bool:
        try:
            return httpx.get(self.metrics_url(state), timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
