"""The router on a real HAProxy (Debian's 2.6) in front of small HTTP servers on loopback: no stack needed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from medianest_delivery.rollout.loadgen import cookieless_client
from medianest_delivery.rollout.router import BackendState, HAProxyRouter, RouterState

pytestmark = pytest.mark.integration
BASE = 47200


def serve(port: int, slot: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("X-Slot", slot)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def router(tmp_path: Path) -> Iterator[tuple[HAProxyRouter, RouterState]]:
    servers = [serve(BASE + 10, "a"), serve(BASE + 11, "a"), serve(BASE + 20, "b")]
    backend = BackendState(
        "web",
        BASE,
        {"a": [BASE + 10, BASE + 11, BASE + 12], "b": [BASE + 20, BASE + 21, BASE + 22]},
        active_replicas={"a": 2, "b": 0},
        weights={"a": 100, "b": 0},
        affinity="cookie",
    )
    state = RouterState("live", BASE + 99, {"web": backend})
    haproxy = HAProxyRouter(tmp_path, "live")
    try:
        yield haproxy, state
    finally:
        haproxy.stop()
        for server in servers:
            server.shutdown()


def slots_seen(requests: int, cookie: str | None = None) -> Counter[str]:
    headers = {"Cookie": f"canary_bucket={cookie}"} if cookie is not None else {}
    with cookieless_client() as client:
        return Counter(
            client.get(f"http://127.0.0.1:{BASE}/", headers=headers).headers["X-Slot"] for _ in range(requests)
        )


def test_canary_share_and_pinned_buckets_follow_the_map_changed_at_run_time(
    router: tuple[HAProxyRouter, RouterState],
) -> None:
    """30% of anonymous requests reach the canary; a bucket below 30 always does, one above never; no reload."""
    haproxy, state = router
    haproxy.apply(state)
    pid = haproxy.pid()
    assert slots_seen(50) == Counter({"a": 50})
    backend = state.backends["web"]
    backend.active_replicas["b"], backend.weights = 1, {"a": 70, "b": 30}
    haproxy.apply(state)
    share = slots_seen(600)["b"] / 600
    assert 0.22 < share < 0.38
    assert slots_seen(20, cookie="7") == Counter({"b": 20})
    assert slots_seen(20, cookie="64") == Counter({"a": 20})
    assert haproxy.live_routes("web")[:30] == ["b"] * 30
    assert haproxy.pid() == pid  # the map changed in the running process


def test_a_router_running_an_older_config_is_replaced_without_dropping_a_request(
    router: tuple[HAProxyRouter, RouterState], tmp_path: Path
) -> None:
    """HAProxy started with a config from before the bucket maps (one weighted backend) is replaced by one that
    serves the maps, while a client keeps sending requests: none fails, and the old process exits."""
    import subprocess

    haproxy, state = router
    haproxy.dir.mkdir(parents=True, exist_ok=True)
    haproxy.config_path.write_text(
        "\n".join(
            [
                "global",
                f"    stats socket {haproxy.socket_path} mode 600 level admin",
                "defaults",
                "    mode http",
                "    timeout connect 2s",
                "    timeout client 30s",
                "    timeout server 30s",
                "frontend fe_web",
                f"    bind 127.0.0.1:{BASE}",
                "    default_backend be_web",
                "backend be_web",
                f"    server a0 127.0.0.1:{BASE + 10} weight 100",
                "",
            ]
        )
    )
    old = subprocess.Popen(haproxy.argv("haproxy"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    haproxy.pid_path.write_text(str(old.pid))
    deadline = time.monotonic() + 10
    while not haproxy.running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert haproxy.running()
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def keep_asking() -> None:
        with cookieless_client() as client:
            while not stop.is_set():
                try:
                    if client.get(f"http://127.0.0.1:{BASE}/").status_code != 200:
                        failures.append("status")
                    answered[0] += 1
                except httpx.HTTPError as exc:
                    failures.append(type(exc).__name__)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        time.sleep(0.3)
        haproxy.start(state)
        time.sleep(0.5)
    finally:
        stop.set()
        asker.join()
    assert failures == []
    assert haproxy.pid() != old.pid
    assert haproxy.live_routes("web") == ["a"] * 100
    assert old.wait(timeout=10) == 0  # the soft stop finished its connections and exited
    assert answered[0] > 50  # the client kept asking through the swap
