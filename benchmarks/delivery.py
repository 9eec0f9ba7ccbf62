"""Benchmark: how fast a bad canary is rolled back, and what a blue-green switch costs clients.

    .venv/bin/python benchmarks/delivery.py

On the local stack, in a preview environment of its own (torn down at the end):
1. release 1.0.0 directly, then release 1.1.0 by canary with the error knob on
   (50% of its requests fail) under the bundled load of 50 requests/s;
   prints the time from the canary's first traffic to the rollback decision and
   to the last response any client got from the canary, and the share of all
   client requests that failed.
2. release 1.1.0 again, healthy, by blue-green under a load of at least 10,000
   requests; prints the switch time seen by clients (first response from green
   to last response from blue) and the failed requests.

Targets: bad canary rolled back within 30 s (Flagger needs at least one 60 s
interval; Argo's documented example 15-20 minutes); switch under 1 s; 0 failed.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import os

    from medianest_delivery.localstack.stack import export_environment, stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings)
    os.environ.update(export_environment(settings))

    from prefect_docker import DockerHost

    from blocks.registry import OciRegistry
    from blocks.signing import SigningKey
    from flows.build_and_publish import build_and_publish
    from flows.deliver import deliver
    from medianest_delivery.appconfig import load_app_config
    from medianest_delivery.errors import RolloutFailedError
    from medianest_delivery.rollout.app_role import drop_environment_database
    from medianest_delivery.rollout.environment import EnvironmentController
    from medianest_delivery.rollout.loadgen import LoadGenerator
    from medianest_delivery.rollout.runtime import DockerRuntime

    app_config = str(ROOT / "examples" / "medianest" / "delivery.yaml")
    suffix = uuid.uuid4().hex[:6]
    environment = f"preview-bench{suffix}"
    from medianest_delivery.localstack.prefect_api import stack_prefect_settings

    # stack_up imported Prefect already: os.environ above is for child processes; this process is told here.
    with stack_prefect_settings(settings), tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        OciRegistry(host=settings.registry_host, namespace=f"bench-{suffix}").save(f"bench-{suffix}", overwrite=True)
        SigningKey().save(f"bench-{suffix}", overwrite=True)  # the local key: the one deploys trust by default
        manifests = {}
        for version in ("1.0.0", "1.1.0"):
            manifest = build_and_publish(
                registry_block=f"bench-{suffix}", signing_key_block=f"bench-{suffix}", version=version, releases_dir=tmp
            )
            manifests[version] = manifest
        common = {
            "environment": environment,
            "staging_environment": None,
            "auto_approve": True,
        }
        env = EnvironmentController(
            environment,
            load_app_config(app_config),
            DockerRuntime(DockerHost(base_url=settings.docker_host).get_client()),
            settings,
        )
        try:
            deliver(release_manifest=manifests["1.0.0"], **common)
            api = f"http://127.0.0.1:{env.plan.router_port(0)}"

            # 1. bad canary under 50 requests/s.
            load = LoadGenerator(f"{api}/api/media", rate=50, max_requests=6000, max_seconds=120).start()
            time.sleep(3)
            started = time.time() - load.elapsed()
            try:
                deliver(release_manifest=manifests["1.1.0"], fault_injection={"MEDIANEST_ERROR_RATE": "0.5"}, **common)
                raise SystemExit("the bad canary was promoted: the benchmark is meaningless")
            except RolloutFailedError as exc:
                backend = exc.summary["components"][0]
            time.sleep(3)
            report = load.stop()
            first_traffic = backend["first_traffic_at"] - started
            decided = backend["decided_at"] - started
            canary_answers = [o.at for o in report.outcomes if o.version == "1.1.0"]
            last_canary = max(canary_answers) if canary_answers else first_traffic
            during = report.between(first_traffic, last_canary + 0.001)
            failed_during = sum(1 for o in during if o.failed)

            # 2. blue-green switch under >= 10,000 requests.
            load = LoadGenerator(f"{api}/version", rate=600, max_requests=30000, max_seconds=90, workers=8).start()
            # The frontend's monitoring window needs evidence too (a window without data is not healthy).
            web = LoadGenerator(f"http://127.0.0.1:{env.plan.router_port(1)}/", 30, 2700, 90).start()
            time.sleep(2)
            deliver(release_manifest=manifests["1.1.0"], strategy="blue-green", **common)
            while load.report.total < 10000 and load.elapsed() < 85:
                time.sleep(0.5)
            time.sleep(1)
            switch = load.stop()
            web.stop()
            first_green = min(o.at for o in switch.outcomes if o.version == "1.1.0")
            last_blue = max(o.at for o in switch.outcomes if o.version == "1.0.0")
        finally:
            env.tear_down()
            drop_environment_database(env.database_url())

    print(f"\n{'measure':<58}{'value':>14}  target")
    rows = [
        ("bad canary: first traffic -> rollback decision", f"{decided - first_traffic:.1f} s", "<= 30 s"),
        ("bad canary: first traffic -> last canary response", f"{last_canary - first_traffic:.1f} s", "<= 30 s"),
        ("bad canary: requests failed while it had traffic", f"{failed_during}/{len(during)}", ""),
        (
            "bad canary: share of client requests failed",
            f"{failed_during / max(1, len(during)):.2%}",
            "<= weight x error rate (10% x 50%)",
        ),
        (
            "blue-green: switch seen by clients (first green -> last blue)",
            f"{max(0.0, last_blue - first_green) * 1000:.0f} ms",
            "< 1 s",
        ),
        ("blue-green: failed requests during the rollout", f"{switch.failed}/{switch.total}", "0 of >= 10,000"),
    ]
    for name, value, target in rows:
        print(f"{name:<58}{value:>14}  {target}")
    print(
        "\nFlagger: analysis interval >= 60 s per step (its documented example ~10 min); Argo Rollouts' documented example 15-20 min."
    )


if __name__ == "__main__":
    main()
