"""Two signed releases of the sample app (1.0.0 and 1.1.0) for the benchmarks that deliver on the stack."""

from __future__ import annotations

from typing import Any


def publish_sample_releases(settings: Any, suffix: str, releases_dir: str) -> list[Any]:
    """Blocks of the benchmark's own (``bench-<suffix>``), then both releases built, signed and published.

    Call it inside ``stack_prefect_settings(settings)``: the flows run on the stack's server.
    """
    from blocks.registry import OciRegistry
    from blocks.signing import SigningKey
    from flows.build_and_publish import build_and_publish

    name = f"bench-{suffix}"
    OciRegistry(host=settings.registry_host, namespace=name).save(name, overwrite=True)
    SigningKey().save(name, overwrite=True)
    return [
        build_and_publish(registry_block=name, signing_key_block=name, version=version, releases_dir=releases_dir)
        for version in ("1.0.0", "1.1.0")
    ]
