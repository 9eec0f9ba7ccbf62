"""The OCI client against the real registry; retries survive a flaky registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
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
    with OciRegistry(host=local_stack.registry_host).get_client() as client:  # the stack's credentials
        client.ping()
        manifest_digest = client.push_artifact(repo, "v1", layers)
        assert client.resolve(repo, "v1") == manifest_digest
        assert client.pull_artifact_layers(repo, "v1") == layers
        assert client.pull_artifact_layers(repo, "missing") == []
        assert client.get_manifest(repo, manifest_digest) is not None


def test_the_stack_registry_refuses_anyone_without_its_credentials(local_stack: StackSettings) -> None:
    """The registry shares loopback with the app's replicas: no push, no pull, no catalog without credentials."""
    repo = f"it-{uuid.uuid4().hex[:8]}/anonymous"
    layers = [Layer(CYCLONEDX_MEDIA_TYPE, b"{}", {})]
    with RegistryClient(local_stack.registry_host) as anonymous, pytest.raises(RegistryError, match="401"):
        anonymous.push_artifact(repo, "v1", layers)
    with (
        RegistryClient(local_stack.registry_host, username="medianest-ci", password="guessed") as wrong,
        pytest.raises(RegistryError, match="401"),
    ):
        wrong.push_artifact(repo, "v1", layers)
    assert httpx.get(f"http://{local_stack.registry_host}/v2/_catalog").status_code == 401
    with OciRegistry(host=local_stack.registry_host).get_client() as ours:
        ours.push_artifact(repo, "v1", layers)
        assert ours.pull_artifact_layers(repo, "v1") == layers


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
        user, password = local_stack.registry_credentials() or ("", "")
        registry = OciRegistry(host=proxy.address, namespace="", username=user, password=password)

        @flow
        def attach_once() -> str:
            return attach_sbom(repo, repo, DIGEST, {"cyclonedx": str(sbom)}, {"cyclonedx": "x"}, registry)

        tag = attach_once()
    assert proxy.failed == 2
    assert tag == signature_tag(DIGEST, "sbom")
    with OciRegistry(host=local_stack.registry_host).get_client() as client:
        assert client.pull_artifact_layers(repo, tag)[0].data == sbom.read_bytes()
