"""The OCI client against the real registry; retries survive a flaky registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prefect import flow

from blocks.registry import OciRegistry
from medianest_delivery.errors import RegistryError
from medianest_delivery.release.cosign_format import (
    CYCLONEDX_MEDIA_TYPE,
    SIMPLE_SIGNING_MEDIA_TYPE,
    Layer,
    signature_tag,
)
from medianest_delivery.release.registry import RegistryClient
from medianest_delivery.settings import StackSettings
from tasks.signing import attach_sbom
from tests.flaky_proxy import FlakyProxy

pytestmark = pytest.mark.integration
DIGEST = "sha256:" + "12" * 32


def test_artifact_round_trip(local_stack: StackSettings) -> None:
    repo = f"it-{uuid.uuid4().hex[:8]}/roundtrip"
    layers = [Layer(SIMPLE_SIGNING_MEDIA_TYPE, b'{"a":1}', {"k": "v"}), Layer(CYCLONEDX_MEDIA_TYPE, b"{}", {})]
    with RegistryClient(local_stack.registry_host) as client:
        client.ping()
        manifest_digest = client.push_artifact(repo, "v1", layers)
        assert client.resolve(repo, "v1") == manifest_digest
        assert client.pull_artifact_layers(repo, "v1") == layers
        assert client.pull_artifact_layers(repo, "missing") == []
        assert client.get_manifest(repo, manifest_digest) is not None


def test_registry_down_is_a_clear_error() -> None:
    with (
        RegistryClient("127.0.0.1:9") as client,
        pytest.raises(RegistryError, match=r"registry 127.0.0.1:9 unreachable"),
    ):
        client.ping()


def test_attach_survives_a_registry_that_fails_twice(
    local_stack: StackSettings, prefect_harness: None, tmp_path: Path
) -> None:
    """Task retries absorb two 503s from the registry, then the upload lands."""
    sbom = tmp_path / "x.cdx.json"
    sbom.write_text(json.dumps({"bomFormat": "CycloneDX"}))
    repo = f"it-{uuid.uuid4().hex[:8]}/flaky"

    with FlakyProxy(local_stack.registry_host, failures=2) as proxy:
        registry = OciRegistry(host=proxy.address, namespace="")

        @flow
        def attach_once() -> str:
            return attach_sbom(repo, repo, DIGEST, {"cyclonedx": str(sbom)}, {"cyclonedx": "x"}, registry)

        tag = attach_once()
    assert proxy.failed == 2
    assert tag == signature_tag(DIGEST, "sbom")
    with RegistryClient(local_stack.registry_host) as client:
        assert client.pull_artifact_layers(repo, tag)[0].data == sbom.read_bytes()
