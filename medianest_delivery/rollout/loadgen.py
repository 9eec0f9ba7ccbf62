"""A bounded traffic generator on loopback that records what every client saw.

Bounded twice: at most ``max_requests`` and at most ``max_seconds``, whichever
comes first, and only to 127.0.0.0/8 or ::1 (the network rule of this project).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import urlparse

import httpx

from medianest_delivery.errors import ConfigError


@dataclass(frozen=True)
class Outcome:
    at: float  # seconds since the generator started
    status: int  # 0 when the connection failed
    version: str
    latency: float

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500


@dataclass
class LoadReport:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if o.failed)

    def by_version(self) -> dict[str, Counter[str]]:
        result: dict[str, Counter[str]] = {}
        for o in self.outcomes:
            result.setdefault(o.version, Counter())["failed" if o.failed else "ok"] += 1
        return result

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if start <= o.at < end]

    def since_first_answer(self) -> LoadReport:
        """The outcomes from the first successful answer on: a first release has nothing to answer before it."""
        first = next((o.at for o in sorted(self.outcomes, key=lambda o: o.at) if not o.failed), None)
        return LoadReport([o for o in self.outcomes if first is not None and o.at >= first])


def cookieless_client(timeout: float = 5) -> httpx.Client:
    """An HTTP client that keeps no cookie: every request is a new anonymous client.

    A router that pins clients to a version by cookie would otherwise pin a
    whole load generator (a few threads) to one side of the split.
    """
    return httpx.Client(timeout=timeout, cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])))


def require_loopback(url: str) -> str:
    host = urlparse(url).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError(f"load generator target {url} is not on loopback (127.0.0.0/8 or ::1)")
    return url


class LoadGenerator:
    """Sends GETs at ``rate`` per second from ``workers`` threads until a bound is hit or stop() is called."""

    def __init__(self, url: str, rate: float, max_requests: int, max_seconds: float, workers: int = 4) -> None:
        if rate <= 0 or max_requests <= 0 or max_seconds <= 0:
            raise ConfigError("rate, max_requests and max_seconds must be positive")
        self.url = require_loopback(url)
        self.rate, self.max_requests, self.max_seconds, self.workers = rate, max_requests, max_seconds, workers
        self.report = LoadReport()
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def _ticket(self) -> int | None:
        with self._lock:
            if self._next >= self.max_requests:
                return None
            self._next += 1
            return self._next - 1

    def _work(self) -> None:
        with cookieless_client() as client:
            while not self._stop.is_set():
                ticket = self._ticket()
                if ticket is None:
                    return
                due = self._started + ticket / self.rate
                if due - self._started > self.max_seconds:
                    return
                delay = due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                sent = time.monotonic()
                try:
                    response = client.get(self.url)
                    status, version = response.status_code, response.headers.get("X-MediaNest-Version", "")
                except httpx.HTTPError:
                    status, version = 0, ""
                outcome = Outcome(sent - self._started, status, version, time.monotonic() - sent)
                with self._lock:
                    self.report.outcomes.append(outcome)

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.workers)]
        for thread in self._threads:
            thread.start()
        return self

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def stop(self) -> LoadReport:
        self._stop.set()
        return self.wait()

    def wait(self) -> LoadReport:
        for thread in self._threads:
            thread.join(timeout=self.max_seconds + 10)
        self.report.seconds = time.monotonic() - self._started
        self.report.outcomes.sort(key=lambda o: o.at)
        return self.report

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
