"""Integration fixtures shared by modules: the two signed sample releases (built once per session)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from blocks.registry import OciRegistry
from blocks.signing import SigningKey
from flows.build_and_publish import build_and_publish
from medianest_delivery.settings import StackSettings


@pytest.fixture(scope="session")
def releases(
    local_stack: StackSettings, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Two signed releases (1.0.0 and 1.1.0) of the sample app, as manifest files.

    Signed with the local stack's key, the one deploys trust by default (no TrustedSigners block), so
    deliver runs in other processes against the stack's own server trust them too.
    """
    from medianest_delivery.localstack.stack import stack_up

    stack_up(local_stack, {"prometheus"})
    tmp = tmp_path_factory.mktemp("deliver")
    suffix = uuid.uuid4().hex[:6]
    OciRegistry(host=local_stack.registry_host, namespace=f"dl-{suffix}").save(f"dl-{suffix}")
    SigningKey().save(f"dl-{suffix}")
    paths = {}
    for version in ("1.0.0", "1.1.0"):
        manifest = build_and_publish(
            registry_block=f"dl-{suffix}", signing_key_block=f"dl-{suffix}", version=version, releases_dir=str(tmp)
        )
        path = tmp / f"{version}.json"
        path.write_text(manifest.to_json())
        paths[version] = path
    return paths
