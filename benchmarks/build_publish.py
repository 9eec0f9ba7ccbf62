"""Benchmark: build-and-publish cold, warm, and a plain sequential script of the same tools.

    .venv/bin/python benchmarks/build_publish.py [--app-config PATH]

Runs on the local stack (`medianest-delivery stack up` first), also while the
demo's environments run. Each mode starts from the same Docker and trivy cache
state: the sequential script and the flow each build on a fresh copy of the base
image (a new image id, so no layer of an image already on the engine is reused),
the builder cache is pruned, images this benchmark built are removed (never one a
container uses), and each mode gets its own trivy cache directory; cold and warm
share a fresh Prefect result store, so warm reuses exactly what cold recorded.

Prints wall times and the ratios against the targets:
  cold flow / sequential script  <= 0.8   (concurrency)
  warm flow / cold flow          <= 0.2   (caching)
  Prefect overhead / stage work  <  5%    (flow wall time not covered by any task run)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_APP = ROOT / "examples" / "medianest" / "delivery.yaml"
BENCH_LABEL = "org.medianest.benchmark"
BASE_REPOSITORY = "medianest-bench/base"


def reset_docker_cache(docker_host: str) -> None:
    """Drop the images this benchmark built, and the builder cache; never an image a container uses.

    The demo's environments keep running while this benchmark runs: their images
    (and the layers under them) stay, and `fresh_base_image` keeps them out of the
    builds. What this benchmark built carries the label of its fresh base image.
    """
    import docker

    client = docker.DockerClient(base_url=docker_host)
    in_use = {c.image.id for c in client.containers.list(all=True) if c.image is not None}
    for image in client.images.list(filters={"label": BENCH_LABEL}):
        if image.id in in_use or any(tag.startswith(BASE_REPOSITORY) for tag in image.tags):
            continue
        # By id with force: drops every tag and pushed-digest reference of an image no container uses.
        client.images.remove(image.id, force=True)
    client.api.prune_builds()
    client.close()


def fresh_base_image(docker_host: str, base_image: str, label: str) -> str:
    """The base image under a new image id, so no build reuses layers of images already on this engine."""
    import io

    import docker

    client = docker.DockerClient(base_url=docker_host)
    tag = f"{BASE_REPOSITORY}:{label}"
    dockerfile = f"FROM {base_image}\nLABEL {BENCH_LABEL}={label}\n".encode()
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=tag, pull=False, rm=True)
    client.close()
    return tag


def remove_images(docker_host: str, tags: list[str]) -> None:
    import docker

    client = docker.DockerClient(base_url=docker_host)
    for tag in tags:
        client.images.remove(tag, force=True)
    client.close()


def run_sequential(app_config: str, namespace: str, work: Path) -> dict[str, Any]:
    """The same tool invocations as the flow, one after another, no Prefect orchestration."""
    import datetime as dt

    from prefect.logging import disable_run_logger
    from prefect_docker import DockerHost

    from blocks.registry import OciRegistry
    from blocks.signing import SigningKey
    from medianest_delivery.appconfig import load_app_config
    from medianest_delivery.release.policy import BUILDER_ID
    from medianest_delivery.release.source import describe_source, tree_digest
    from medianest_delivery.settings import StackSettings
    from tasks.build import build_image, inspect_base_image, oci_labels, push_image
    from tasks.quality import gate_coverage, run_quality_command
    from tasks.sbom import file_digests, generate_sbom
    from tasks.scan import gate_security, record_image_scan, scan_image, scan_source_sast, scan_source_trivy
    from tasks.signing import attach_sbom, fingerprint, load_public_key_pem, sign_image, verify_image

    settings = StackSettings()
    config = load_app_config(app_config)
    registry = OciRegistry(host=settings.registry_host, namespace=namespace)
    signing_key = SigningKey(key_dir=str(work / "keys"))
    docker_host = DockerHost(base_url=settings.docker_host)
    cache = str(settings.trivy_cache_dir)
    started = time.perf_counter()
    with disable_run_logger():
        source = describe_source(config.root)
        for command in config.quality.commands:
            run_quality_command.fn(command.name, command.resolved_argv(), source.root, source.tree_digest)
        if config.quality.coverage_report:
            gate_coverage.fn(str(config.path(config.quality.coverage_report)), config.quality.coverage_min, "x")
        scans = [
            scan_source_trivy.fn(source.root, source.tree_digest, cache),
            scan_source_sast.fn(source.root, config.security.sast_paths, source.tree_digest),
        ]
        gate_security.fn(
            "source",
            scans,
            config.security.fail_on,
            config.security.forbidden_licenses,
            str(config.path(config.security.ignore_file)) if config.security.ignore_file else None,
            str(work / "seq" / "source.sarif"),
        )
        base_id = inspect_base_image.fn(docker_host, settings.base_image)
        public_key = load_public_key_pem.fn(signing_key)
        for component in config.components:
            labels = oci_labels(
                revision=source.git_sha,
                source=config.source,
                created=source.commit_time,
                version=config.version,
                title=component.name,
            )
            built = build_image.fn(
                component.name,
                str(config.path(component.context)),
                component.dockerfile,
                tree_digest(config.path(component.context)),
                settings.base_image,
                base_id,
                labels,
                docker_host,
            )
            tags = [source.git_sha[:12] + "-seq", config.version]
            digest = push_image.fn(
                component.name, built, registry.image_name(component.name), tags, registry, docker_host
            )
            reference = f"{registry.image_name(component.name)}@{digest}"
            scan = scan_image.fn(component.name, reference, cache, str(work / "seq"), True, registry)
            gate_security.fn(
                "images",
                [scan],
                config.security.fail_on,
                config.security.forbidden_licenses,
                None,
                str(work / "seq" / "images.sarif"),
            )
            sboms = generate_sbom.fn(component.name, reference, scan, str(work / "seq" / "sbom"))
            attach_sbom.fn(
                component.name, registry.repository(component.name), digest, sboms, file_digests(sboms), registry
            )
            now = dt.datetime.now(dt.UTC).isoformat()
            provenance = {
                "source_uri": config.source,
                "git_sha": source.git_sha,
                "dockerfile": component.dockerfile,
                "component": component.name,
                "version": config.version,
                "base_image_digest": base_id,
                "builder_id": BUILDER_ID,
                "invocation_id": "sequential",
                "started_on": now,
                "finished_on": now,
            }
            scan_predicate = record_image_scan.fn(
                component.name, scan, config.security.fail_on, config.security.forbidden_licenses, None, []
            )
            sign_image.fn(
                component.name,
                registry.repository(component.name),
                digest,
                provenance,
                sboms,
                file_digests(sboms),
                scan_predicate,
                fingerprint(public_key),
                registry,
                signing_key,
            )
            verify_image.fn(registry.repository(component.name), digest, tags, public_key, registry)
    return {"wall_seconds": time.perf_counter() - started}


def run_flow(app_config: str, namespace: str, work: Path) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    from blocks.registry import OciRegistry
    from blocks.signing import SigningKey
    from flows.build_and_publish import build_and_publish
    from medianest_delivery.release.timings import covered_seconds
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    OciRegistry(host=settings.registry_host, namespace=namespace).save(namespace, overwrite=True)
    SigningKey(key_dir=str(work / "keys")).save(namespace, overwrite=True)
    started = time.perf_counter()
    manifest = build_and_publish(
        app_config=app_config,
        registry_block=namespace,
        signing_key_block=namespace,
        releases_dir=str(work / "releases"),
    )
    wall = time.perf_counter() - started
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(uuid.UUID(manifest.flow_run_id or ""))
        task_runs = [r for r in client.read_task_runs() if r.flow_run_id == flow_run.id]
    covered = covered_seconds((r.start_time, r.end_time) for r in task_runs if r.start_time and r.end_time)
    if flow_run.start_time is None or flow_run.end_time is None:
        raise RuntimeError(f"flow run {flow_run.id} has no start or end time")
    flow_seconds = (flow_run.end_time - flow_run.start_time).total_seconds()
    return {
        "wall_seconds": wall,
        "flow_run_seconds": flow_seconds,
        "task_covered_seconds": covered,
        "task_runs": len(task_runs),
        "stage_seconds": manifest.stage_seconds,
    }


def child(mode: str, app_config: str, namespace: str, work: Path) -> dict[str, Any]:
    if mode == "sequential":
        return run_sequential(app_config, namespace, work)
    return run_flow(app_config, namespace, work)


def spawn(mode: str, app_config: str, namespace: str, work: Path, env: dict[str, str]) -> dict[str, Any]:
    out = work / f"{mode}.json"
    subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--app-config",
            app_config,
            "--namespace",
            namespace,
            "--work",
            str(work),
            "--out",
            str(out),
        ],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-config", default=str(DEFAULT_APP))
    parser.add_argument("--child", choices=["sequential", "cold", "warm"])
    parser.add_argument("--namespace")
    parser.add_argument("--work")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        Path(args.out).write_text(json.dumps(child(args.child, args.app_config, args.namespace, Path(args.work))))
        return

    from medianest_delivery.localstack.stack import export_environment, stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings)
    base_env = export_environment(settings)
    run_id = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        work = Path(tmp)
        results_store = {"PREFECT_LOCAL_STORAGE_PATH": str(work / "prefect-results")}

        bases = {
            mode: fresh_base_image(settings.docker_host, settings.base_image, f"{run_id}-{mode}")
            for mode in ("seq", "flow")
        }
        reset_docker_cache(settings.docker_host)
        seq = spawn(
            "sequential",
            args.app_config,
            f"bench-{run_id}-seq",
            work,
            {**base_env, "TRIVY_CACHE_DIR": str(work / "trivy-seq"), "MEDIANEST_BASE_IMAGE": bases["seq"]},
        )
        reset_docker_cache(settings.docker_host)
        flow_env = {
            **base_env,
            **results_store,
            "TRIVY_CACHE_DIR": str(work / "trivy-flow"),
            "MEDIANEST_BASE_IMAGE": bases["flow"],
        }
        cold = spawn("cold", args.app_config, f"bench-{run_id}-flow", work, flow_env)
        warm = spawn("warm", args.app_config, f"bench-{run_id}-flow", work, flow_env)
        reset_docker_cache(settings.docker_host)
        remove_images(settings.docker_host, list(bases.values()))

    overhead = (cold["flow_run_seconds"] - cold["task_covered_seconds"]) / cold["task_covered_seconds"]
    rows = [
        ("sequential script", seq["wall_seconds"], "baseline", ""),
        (
            "flow, cold",
            cold["wall_seconds"],
            f"{cold['wall_seconds'] / seq['wall_seconds']:.2f}x sequential",
            "<= 0.80x",
        ),
        (
            "flow, warm (same commit)",
            warm["wall_seconds"],
            f"{warm['wall_seconds'] / cold['wall_seconds']:.2f}x cold",
            "<= 0.20x",
        ),
    ]
    print(f"{'mode':<28}{'wall s':>9}  {'ratio':<22}{'target'}")
    for name, seconds, ratio, target in rows:
        print(f"{name:<28}{seconds:>9.2f}  {ratio:<22}{target}")
    print(
        f"\nPrefect overhead (cold): flow run {cold['flow_run_seconds']:.2f}s, covered by {cold['task_runs']} task runs "
        f"{cold['task_covered_seconds']:.2f}s -> {overhead * 100:.1f}% of stage work (target < 5%)"
    )
    fixed = cold["wall_seconds"] - cold["flow_run_seconds"]
    print(
        f"Prefect per-flow-run fixed cost (client side: run creation, heartbeat-thread join, teardown): {fixed:.2f}s; "
        f"cold flow without it: {cold['flow_run_seconds'] / seq['wall_seconds']:.2f}x sequential, "
        f"warm without it: {warm['flow_run_seconds'] / cold['flow_run_seconds']:.2f}x cold"
    )
    print("cold stage times: " + ", ".join(f"{k} {v:.2f}s" for k, v in cold["stage_seconds"].items()))


if __name__ == "__main__":
    main()
