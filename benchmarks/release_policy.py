"""Benchmark: what the release policy costs a deploy, per image.

    .venv/bin/python benchmarks/release_policy.py [--rounds 40]

On the local stack: publishes the sample app once (build-and-publish with its
defaults; later runs hit Prefect's cache), then verifies each image again and
again as a deploy to production does, two ways, side by side:

- baseline: signature-only verification (the trusted key's signature and the
  immutable tag), what deploys checked before the policy;
- policy: the full check (every attestation fetched, its DSSE signature and
  subject verified, provenance, base image, both SBOMs, scan age, findings,
  ignore expiry, waivers) with the sample app's release policy.

Both include the registry round trips (pulling the .sig and .att artifacts),
which is what a deploy waits for. Prints p50/p95 per image and the ratio
against the baseline, and the pure judgement alone (no registry).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=40, help="verifications per image and way (default 40)")
    args = parser.parse_args()

    from medianest_delivery.localstack.stack import stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings)
    # Prefect reads its settings once: run everything inside settings that point at the stack's server
    # (its URL and its credentials).
    from medianest_delivery.localstack.prefect_api import stack_prefect_settings

    with stack_prefect_settings(settings):
        run(settings, args.rounds)


def run(settings: object, rounds: int) -> None:
    from prefect.logging import disable_run_logger

    from blocks.policy import release_policy_for
    from blocks.registry import OciRegistry
    from flows.build_and_publish import build_and_publish
    from medianest_delivery.appconfig import DEFAULT_APP_CONFIG, load_app_config
    from medianest_delivery.release.cosign_format import signature_tag
    from medianest_delivery.release.policy import PolicyContext, judge_image
    from medianest_delivery.release.refs import tag_from_version
    from medianest_delivery.release.signing_keys import load_public_key
    from medianest_delivery.settings import StackSettings
    from tasks.signing import ATTESTED_PREDICATES, verify_image

    assert isinstance(settings, StackSettings)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = build_and_publish(releases_dir=tmp)
    policy = release_policy_for(load_app_config(DEFAULT_APP_CONFIG), None)
    registry = OciRegistry(host=settings.registry_host, namespace="")
    public_pem = (settings.keys_dir / "cosign.pub").read_text()
    bases = (
        [line for line in settings.built_base_images_file.read_text().split() if line]
        if (settings.built_base_images_file.is_file())
        else []
    )
    import docker

    client = docker.DockerClient(base_url=settings.docker_host)
    bases.append(str(client.images.get(settings.base_image).id))
    client.close()
    tag = tag_from_version(manifest.version)

    timings: dict[str, list[float]] = {"baseline": [], "policy": [], "pure policy": []}
    with disable_run_logger():
        for image in manifest.images:
            repository = image.repository.removeprefix(f"{registry.host}/")
            for _ in range(rounds):
                started = time.perf_counter()
                with registry.get_client() as oci:  # baseline: the signature and the tag, nothing else
                    layers = oci.pull_artifact_layers(repository, signature_tag(image.digest, "sig"))
                    current = oci.resolve(repository, tag)
                report, _ = judge_image(
                    None,
                    image.digest,
                    image.repository,
                    layers,
                    [],
                    load_public_key(public_pem.encode()),
                    {tag: current},
                    None,
                    [],
                )
                assert report.ok, report.problems
                timings["baseline"].append(time.perf_counter() - started)

                started = time.perf_counter()
                verify_image.fn(
                    repository, image.digest, [tag], public_pem, registry, policy, "production", manifest.git_sha, bases
                )
                timings["policy"].append(time.perf_counter() - started)

            with registry.get_client() as oci:
                signatures = oci.pull_artifact_layers(repository, signature_tag(image.digest, "sig"))
                attestations = oci.pull_artifact_layers(repository, signature_tag(image.digest, "att"))
            key = load_public_key(public_pem.encode())
            context = PolicyContext("production", dt.datetime.now(dt.UTC), manifest.git_sha, frozenset(bases))
            for _ in range(rounds):
                started = time.perf_counter()
                report, _ = judge_image(
                    policy,
                    image.digest,
                    image.repository,
                    signatures,
                    attestations,
                    key,
                    {tag: image.digest},
                    context,
                    ATTESTED_PREDICATES,
                )
                assert report.ok, report.problems
                timings["pure policy"].append(time.perf_counter() - started)

    print(f"release {manifest.app} {manifest.version}: {len(manifest.images)} images, {rounds} rounds each")
    print(f"{'way':<12} {'p50 ms':>8} {'p95 ms':>8} {'x baseline p95':>15}")
    base_p95 = percentile(timings["baseline"], 0.95)
    for way, samples in timings.items():
        p95 = percentile(samples, 0.95)
        print(f"{way:<12} {statistics.median(samples) * 1000:8.1f} {p95 * 1000:8.1f} {p95 / base_p95:15.2f}")


if __name__ == "__main__":
    main()
