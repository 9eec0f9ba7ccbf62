"""Clean traffic transitions: what clients see while releases move, on the local stack.

Each scenario runs under its own bounded load on loopback (the API at
``--rate`` requests/s, the frontend at a fifth of it) and repeats its
transition until the API load has sent ``--requests`` requests, so every
figure covers many transitions, not one lucky one:

- canary: `deliver` by canary with default parameters (10/30/50/100%, the
  judge, promote, decommission), alternating between two releases;
- abort: `deliver` of a release 60 ms slower than stable: the judge aborts the
  canary (slow answers, no failed ones);
- blue-green: green started beside blue, all traffic switched, then switched
  back to blue (the instant rollback) and green removed;
- rollback: `deliver` blue-green with defaults (the previous release is
  decommissioned), then the `rollback` flow puts the release before it back
  (a redeploy from its image: target 15 s or less);
- pinned: 1,000 cookie-holding browsers on the frontend across canary steps
  10, 30, 50 and 100%: how many ever went back from the new version to the old.

Targets (issue 12): 0 failed client requests in every scenario at 100
requests/s with at least 50,000 requests each; rollback within 15 s; no
version flip for pinned clients. Baseline: the same load with no transition
at all (the floor any transition is compared with).

    .venv/bin/python benchmarks/traffic_transitions.py            # 100 req/s, 50,000 requests per scenario
    .venv/bin/python benchmarks/traffic_transitions.py --requests 3000 --only canary
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from medianest_delivery.rollout.environment import EnvironmentController  # noqa: E402
from medianest_delivery.rollout.loadgen import LoadGenerator, LoadReport, cookieless_client  # noqa: E402

SLOWER = {"MEDIANEST_EXTRA_LATENCY_MS": "60"}
PINNED_STEPS = (10, 30, 50, 100)
ROLLBACK_TARGET_SECONDS = 15.0


@dataclass
class ScenarioReport:
    name: str
    api: LoadReport
    frontend: LoadReport
    transitions: int
    durations: list[float] = field(default_factory=list)  # seconds per transition (rollback: the flow's run)
    outcomes: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return self.api.total + self.frontend.total

    @property
    def failed(self) -> int:
        return self.api.failed + self.frontend.failed

    def failure_codes(self) -> Counter[int]:
        return Counter(o.status for o in self.api.outcomes + self.frontend.outcomes if o.failed)


@dataclass
class Releases:
    """Two signed releases of the sample app and the environment they take turns in."""

    environment: str
    manifests: list[Any]  # ReleaseManifest, the stable one first
    app_config: str
    deliver_overrides: dict[str, Any] = field(default_factory=dict)  # tests' faster judge; the benchmark: none
    stable: int = 0

    def docker_host(self) -> Any:
        from prefect_docker import DockerHost

        from medianest_delivery.settings import StackSettings

        return DockerHost(base_url=StackSettings().docker_host)

    def controller(self) -> EnvironmentController:
        from tasks.rollout import controller

        return controller(self.environment, self.app_config, self.docker_host())

    def start_candidate(self, component: str) -> str:
        """The other release's replicas in the component's free slot, healthy, recorded, not routed; the slot."""
        from tasks.rollout import deploy_slot

        release = self.manifests[1 - self.stable]
        slot = self.controller().candidate_slot(component)
        image = release.image(component).reference
        deploy_slot.fn(
            self.environment, self.app_config, component, slot, image, release.version, 2, {}, 60, self.docker_host()
        )
        return slot

    def router_url(self, component: int) -> str:
        return f"http://127.0.0.1:{self.controller().plan.router_port(component)}"

    def deliver(self, candidate: int, **kwargs: Any) -> dict[str, Any]:
        from flows.deliver import deliver
        from medianest_delivery.errors import RolloutFailedError

        params = {
            "release_manifest": self.manifests[candidate],
            "environment": self.environment,
            "staging_environment": None,
            "auto_approve": True,
            "app_config": self.app_config,
            **self.deliver_overrides,
            **kwargs,
        }
        try:
            summary = deliver(**params)
        except RolloutFailedError as exc:
            summary = exc.summary
        if summary["outcome"] == "promoted":
            self.stable = candidate
        return dict(summary)


def under_load(
    name: str, releases: Releases, rate: float, requests: int, transition: Callable[[], tuple[str, float]]
) -> ScenarioReport:
    """Repeat ``transition`` (returns its outcome and duration) until the API load has sent ``requests``.

    The load keeps going until the transition in progress has finished, so no
    transition's end escapes it; both loads are bounded (10x the requests, one hour).
    """
    api = LoadGenerator(f"{releases.router_url(0)}/api/media", rate, 10 * requests, 3600, workers=8).start()
    frontend = LoadGenerator(f"{releases.router_url(1)}/", rate / 5, 2 * requests, 3600, workers=4).start()
    report = ScenarioReport(name, LoadReport(), LoadReport(), 0)
    try:
        while report.transitions == 0 or len(api.report.outcomes) < requests:
            outcome, seconds = transition()
            report.transitions += 1
            report.outcomes[outcome] += 1
            report.durations.append(seconds)
            print(
                f"     {name} #{report.transitions}: {outcome} in {seconds:.1f} s, {len(api.report.outcomes)} requests"
            )
    finally:
        report.api, report.frontend = api.stop(), frontend.stop()
    return report


def canary_promotion(releases: Releases) -> tuple[str, float]:
    started = time.monotonic()
    summary = releases.deliver(1 - releases.stable)
    return summary["outcome"], time.monotonic() - started


def canary_abort(releases: Releases) -> tuple[str, float]:
    started = time.monotonic()
    summary = releases.deliver(1 - releases.stable, fault_injection=SLOWER)
    return summary["outcome"], time.monotonic() - started


def blue_green_and_back(releases: Releases) -> tuple[str, float]:
    """Green beside blue, every component switched to green, then back to blue; green removed."""
    env = releases.controller()
    started = time.monotonic()
    for component in env.config.components:
        releases.start_candidate(component.name)
        env.set_weights(component.name, 100, 2)
        env.promote(component.name)
    time.sleep(2)  # green serves everything for a moment
    for component in env.config.components:
        env.revert(component.name)
    return "switched and back", time.monotonic() - started


def rollback_after_decommission(releases: Releases) -> tuple[str, float]:
    """Blue-green to the other release (its predecessor decommissioned), then the `rollback` flow, timed."""
    from flows.rollback import rollback_release

    summary = releases.deliver(1 - releases.stable, strategy="blue-green")
    if summary["outcome"] != "promoted":
        return f"blue-green {summary['outcome']}", 0.0
    started = time.monotonic()
    result = rollback_release(environment=releases.environment, app_config=releases.app_config)
    seconds = time.monotonic() - started
    releases.stable = 1 - releases.stable
    return f"rolled back to {result['version']}", seconds


@dataclass
class PinnedReport:
    clients: int
    shares: dict[int, float]  # step -> share of clients on the new version
    flips: int  # clients that saw the new version, then the old one
    failed: int
    requests: int


def pinned_browsers(releases: Releases, clients: int = 1000) -> PinnedReport:
    """1,000 cookie-holding browsers on the frontend while its canary goes 10, 30, 50, 100%, then is promoted."""
    env = releases.controller()
    new = releases.manifests[1 - releases.stable]
    url = f"{releases.router_url(1)}/"
    releases.start_candidate("frontend")
    cookies: dict[int, str] = {}
    seen: dict[int, list[str]] = {c: [] for c in range(clients)}
    failed = requests = 0
    lock = threading.Lock()

    def visit(http: httpx.Client, client: int) -> None:
        nonlocal failed, requests
        headers = {"Cookie": cookies[client]} if client in cookies else {}
        try:
            response = http.get(url, headers=headers)
            ok, version = response.status_code < 500, response.headers.get("X-MediaNest-Version", "")
            cookie = response.cookies.get("canary_bucket")
        except httpx.HTTPError:
            ok, version, cookie = False, "", None
        with lock:
            requests += 1
            if not ok:
                failed += 1
                return
            if cookie is not None:
                cookies[client] = f"canary_bucket={cookie}"
            seen[client].append(version)

    shares: dict[int, float] = {}
    local = threading.local()

    def http_client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = cookieless_client()
        client: httpx.Client = local.client
        return client

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: visit(http_client(), c), range(clients)))  # every browser gets its cookie
        for step in PINNED_STEPS:
            env.set_weights("frontend", step, 2)
            for _ in range(2):  # two page views per browser per step
                list(pool.map(lambda c: visit(http_client(), c), range(clients)))
            latest = [versions[-1] for versions in seen.values() if versions]
            shares[step] = sum(v == new.version for v in latest) / max(1, len(latest))
    env.promote("frontend")
    env.decommission("frontend")
    releases.stable = 1 - releases.stable  # the frontend is on the new release now; the backend stays
    flips = sum(went_back(versions, new.version) for versions in seen.values())
    return PinnedReport(clients, shares, flips, failed, requests)


def went_back(versions: list[str], new: str) -> bool:
    """Whether a client that had seen the new version later saw another one."""
    if new not in versions:
        return False
    return any(v != new for v in versions[versions.index(new) :])


def print_report(baseline: ScenarioReport | None, reports: list[ScenarioReport]) -> None:
    print("\n   scenario      transitions   requests   failed   failure codes        per transition (s)  p50 latency")
    for r in ([baseline] if baseline else []) + reports:
        latencies = sorted(o.latency for o in r.api.outcomes) or [0.0]
        per = f"{statistics.median(r.durations):.1f} / max {max(r.durations):.1f}" if r.durations else "-"
        codes = dict(r.failure_codes()) or "-"
        print(
            f"   {r.name:<13} {r.transitions:>11} {r.requests:>10} {r.failed:>8}   {codes!s:<20} {per:<19}"
            f" {1000 * latencies[len(latencies) // 2]:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="API requests per second (frontend: a fifth)")
    parser.add_argument("--requests", type=int, default=50_000, help="API requests per scenario, at least")
    parser.add_argument("--only", action="append", help="run only these scenarios (repeatable)")
    args = parser.parse_args()

    import os
    import tempfile
    import uuid

    from medianest_delivery.localstack.stack import export_environment, stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings)
    os.environ.update(export_environment(settings))

    from benchmarks.sample_releases import publish_sample_releases
    from medianest_delivery.localstack.prefect_api import stack_prefect_settings
    from medianest_delivery.rollout.app_role import drop_environment_database

    chosen = args.only or ["baseline", "canary", "abort", "blue-green", "rollback", "pinned"]
    print(f"Traffic transitions at {args.rate:.0f} req/s to the API, {args.rate / 5:.0f} to the frontend,")
    print(f"at least {args.requests} API requests per scenario, default parameters")
    suffix = uuid.uuid4().hex[:6]
    app_config = str(ROOT / "examples" / "medianest" / "delivery.yaml")
    with stack_prefect_settings(settings), tempfile.TemporaryDirectory(prefix="bench-transitions-") as tmp:
        manifests = publish_sample_releases(settings, suffix, tmp)
        releases = Releases(f"preview-moves{suffix}", manifests, app_config)
        env = releases.controller()
        reports: list[ScenarioReport] = []
        baseline = None
        try:
            releases.deliver(0)
            if "baseline" in chosen:
                baseline = under_load("no transition", releases, args.rate, args.requests, lambda: idle(args))
            scenarios: dict[str, Callable[[], tuple[str, float]]] = {
                "canary": lambda: canary_promotion(releases),
                "abort": lambda: canary_abort(releases),
                "blue-green": lambda: blue_green_and_back(releases),
                "rollback": lambda: rollback_after_decommission(releases),
            }
            for name, transition in scenarios.items():
                if name in chosen:
                    print(f"\n   {name}:")
                    reports.append(under_load(name, releases, args.rate, args.requests, transition))
            print_report(baseline, reports)
            if "pinned" in chosen:
                pinned = pinned_browsers(releases)
                print(f"\n   pinned: {pinned.clients} browsers, {pinned.requests} page views, {pinned.failed} failed")
                print("   step   share of browsers on the new version")
                for step, share in pinned.shares.items():
                    print(f"   {step:>3}%   {100 * share:.1f}%")
                print(f"   browsers that went back from the new version to the old: {pinned.flips} (target 0)")
            for r in reports:
                if r.name == "rollback":
                    times = [d for d in r.durations if d > 0]
                    if times:
                        print(
                            f"\n   rollback after decommission: p50 {statistics.median(times):.1f} s,"
                            f" max {max(times):.1f} s (target {ROLLBACK_TARGET_SECONDS:.0f} s)"
                        )
        finally:
            env.tear_down()
            drop_environment_database(env.database_url())


def idle(args: argparse.Namespace) -> tuple[str, float]:
    seconds = args.requests / args.rate
    time.sleep(seconds)
    return "idle", seconds


if __name__ == "__main__":
    main()
