"""build-and-publish end to end on the real Docker Engine, registry and trivy, under Prefect's harness."""

from __future__ import annotations

import base64
import functools
import json
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from prefect.logging import disable_run_logger

from blocks.registry import OciRegistry
from blocks.signing import SigningKey
from flows.build_and_publish import build_and_publish
from medianest_delivery.errors import CommandFailedError, ConfigError, GateFailedError, RegistryError, VerificationError
from medianest_delivery.release.cosign_format import (
    DSSE_MEDIA_TYPE,
    SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING_MEDIA_TYPE,
    Layer,
    signature_tag,
    simple_signing_payload,
)
from medianest_delivery.release.manifest import ReleaseManifest, load_release_manifest
from medianest_delivery.release.signing_keys import generate_key_pair, load_private_key, sign_bytes
from medianest_delivery.settings import StackSettings
from tasks.signing import verify_image
from tests.helpers import SAMPLE_APP

pytestmark = pytest.mark.integration

STAGES = ("source", "quality", "scan-source", "build", "push", "scan-image", "sbom", "sign", "verify")


def save_blocks(tmp_path: Path, registry_host: str) -> dict[str, str]:
    """Blocks with a namespace of this test's own, so tests never see each other's tags."""
    suffix = uuid.uuid4().hex[:8]
    OciRegistry(host=registry_host, namespace=f"it-{suffix}").save(f"registry-{suffix}")
    SigningKey(key_dir=str(tmp_path / "keys")).save(f"key-{suffix}")
    return {"registry_block": f"registry-{suffix}", "signing_key_block": f"key-{suffix}"}


def publish(tmp_path: Path, settings: StackSettings, **kwargs: Any) -> ReleaseManifest:
    blocks = save_blocks(tmp_path, settings.registry_host)
    return build_and_publish(releases_dir=str(tmp_path / "releases"), **{**blocks, **kwargs})


@pytest.fixture(scope="module")
def first_run(
    local_stack: StackSettings, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ReleaseManifest, dict[str, str], Path]:
    tmp_path = tmp_path_factory.mktemp("release")
    blocks = save_blocks(tmp_path, local_stack.registry_host)
    manifest = build_and_publish(releases_dir=str(tmp_path / "releases"), **blocks)
    return manifest, blocks, tmp_path


@pytest.fixture(scope="module")
def release(first_run: tuple[ReleaseManifest, dict[str, str], Path]) -> ReleaseManifest:
    return first_run[0]


def registry_for(manifest: ReleaseManifest) -> OciRegistry:
    namespace = manifest.images[0].repository.split("/", 1)[1].rsplit("/", 1)[0]
    return OciRegistry(host=manifest.registry, namespace=namespace)


def test_release_manifest_lists_signed_images_by_digest(release: ReleaseManifest) -> None:
    assert [i.component for i in release.images] == ["backend", "frontend"]
    for image in release.images:
        assert image.digest.startswith("sha256:")
        assert image.verified
        assert image.signature is not None
        assert image.signature.signer in ("cryptography", "cosign")
        assert release.git_sha[:12] in image.tags[0]
        assert image.tags[1] == "1.0.0"
    assert release.scan.outcome == "pass"
    assert release.quality["coverage_percent"] >= 85  # type: ignore[operator]
    assert set(release.stage_seconds) >= set(STAGES)
    assert all(seconds >= 0 for seconds in release.stage_seconds.values())


def test_sboms_are_written_and_attached(release: ReleaseManifest) -> None:
    image = release.image("backend")
    cyclonedx = json.loads(Path(image.sbom_files["cyclonedx"]).read_text())
    spdx = json.loads(Path(image.sbom_files["spdx"]).read_text())
    assert cyclonedx["bomFormat"] == "CycloneDX"
    assert any(c["name"] == "python3" for c in cyclonedx["components"])  # from the Debian base
    assert spdx["spdxVersion"].startswith("SPDX-")
    registry = registry_for(release)
    with registry.get_client() as client:
        layers = client.pull_artifact_layers(registry.repository("backend"), signature_tag(image.digest, "sbom"))
    assert sorted(layer.media_type for layer in layers) == ["application/vnd.cyclonedx+json", "text/spdx+json"]


def test_image_carries_oci_labels_and_runs_non_root(release: ReleaseManifest, local_stack: StackSettings) -> None:
    client = docker.DockerClient(base_url=local_stack.docker_host)
    image = client.images.pull(release.image("backend").reference, auth_config=registry_for(release).docker_auth())
    labels = image.labels
    assert labels["org.opencontainers.image.revision"] == release.git_sha
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"] == release.git_commit_time
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
    client.close()


def test_manifest_is_persisted_and_reloadable(release: ReleaseManifest, tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(release.to_json())
    assert load_release_manifest(path) == release


def test_rerun_on_unchanged_commit_is_served_from_cache(
    first_run: tuple[ReleaseManifest, dict[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same blocks, same commit: quality, scans, builds, SBOMs and signatures come from Prefect's cache.

    Each cached task's function is wrapped with a call counter: a cache hit never calls it.
    (Task-run states read back from the harness's SQLite server can lose writes under load.)
    """
    import tasks.build
    import tasks.quality
    import tasks.sbom
    import tasks.scan
    import tasks.signing

    calls: dict[str, int] = {}
    cached_tasks = [
        tasks.quality.run_quality_command,
        tasks.scan.scan_source_trivy,
        tasks.scan.scan_source_sast,
        tasks.build.build_image,
        tasks.build.push_image,
        tasks.scan.scan_image,
        tasks.sbom.generate_sbom,
        tasks.signing.sign_image,
    ]

    def counted(fn: Any, name: str) -> Any:
        @functools.wraps(fn)  # keeps the signature Prefect binds parameters against
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)

        return wrapper

    for cached in cached_tasks:
        monkeypatch.setattr(cached, "fn", counted(cached.fn, cached.name))
    release, blocks, tmp_path = first_run
    again = build_and_publish(releases_dir=str(tmp_path / "releases"), **blocks)
    assert [i.digest for i in again.images] == [i.digest for i in release.images]
    assert calls == {}, f"these tasks ran instead of hitting the cache: {calls}"
    # A cached stage still reports its timing, marked cached (issue 9: `make test` after `make demo`).
    assert set(again.stage_seconds) >= set(STAGES)
    # Stages made only of cacheable tasks; "build" also inspects the base image, "verify" always runs.
    assert {"quality", "scan-source", "scan-image", "sbom"} <= set(again.cached_stages)
    assert not {"build", "verify"} & set(again.cached_stages)


def verify(manifest: ReleaseManifest, component: str) -> dict[str, Any]:
    image = manifest.image(component)
    registry = registry_for(manifest)
    with disable_run_logger():
        return verify_image.fn(
            registry.repository(component), image.digest, image.tags, manifest.public_key_pem, registry
        )  # type: ignore[no-any-return]


@pytest.fixture
def fresh_release(local_stack: StackSettings, prefect_harness: None, tmp_path: Path) -> ReleaseManifest:
    """A release of its own, so tampering with it cannot affect other tests."""
    manifest = publish(tmp_path, local_stack)
    assert verify(manifest, "backend")["signatures"] == 1
    return manifest


def test_repushed_tag_fails_verification(fresh_release: ReleaseManifest, local_stack: StackSettings) -> None:
    image = fresh_release.image("backend")
    client = docker.DockerClient(base_url=local_stack.docker_host)
    impostor = client.images.get(local_stack.base_image)
    impostor.tag(image.repository, "1.0.0")
    pushed = client.images.push(image.repository, "1.0.0", auth_config=registry_for(fresh_release).docker_auth())
    client.close()
    assert '"error"' not in pushed, pushed  # the impostor really is in the registry under the tag
    with pytest.raises(VerificationError, match=r"\[tag.immutable\] tag \S+:1\.0\.0 now points at"):
        verify(fresh_release, "backend")


def test_signature_by_another_key_fails_verification(fresh_release: ReleaseManifest) -> None:
    image = fresh_release.image("backend")
    registry = registry_for(fresh_release)
    pair = generate_key_pair(b"")
    payload = simple_signing_payload(image.repository, image.digest)
    forged = base64.b64encode(sign_bytes(load_private_key(pair.private_pem, b""), payload)).decode()
    with registry.get_client() as client:
        client.push_artifact(
            registry.repository("backend"),
            signature_tag(image.digest, "sig"),
            [Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: forged})],
        )
    with pytest.raises(VerificationError, match="signature does not verify with the trusted key"):
        verify(fresh_release, "backend")


def test_co_signature_by_another_key_is_kept_and_ours_still_verifies(fresh_release: ReleaseManifest) -> None:
    """A second signer appends to .sig (as cosign does); our verification still passes on our signature alone."""
    image = fresh_release.image("backend")
    registry = registry_for(fresh_release)
    other = generate_key_pair(b"")
    payload = simple_signing_payload(image.repository, image.digest)
    theirs = base64.b64encode(sign_bytes(load_private_key(other.private_pem, b""), payload)).decode()
    repository, tag = registry.repository("backend"), signature_tag(image.digest, "sig")
    with registry.get_client() as client:
        existing = client.pull_artifact_layers(repository, tag)
        client.push_artifact(
            repository, tag, [*existing, Layer(SIMPLE_SIGNING_MEDIA_TYPE, payload, {SIGNATURE_ANNOTATION: theirs})]
        )
        assert len(client.pull_artifact_layers(repository, tag)) == len(existing) + 1
    assert verify(fresh_release, "backend")["signatures"] == 1


def test_edited_attestation_fails_verification(fresh_release: ReleaseManifest) -> None:
    image = fresh_release.image("frontend")
    registry = registry_for(fresh_release)
    repository = registry.repository("frontend")
    tag = signature_tag(image.digest, "att")
    with registry.get_client() as client:
        layers = client.pull_artifact_layers(repository, tag)
        envelope = json.loads(layers[0].data)
        statement = json.loads(base64.b64decode(envelope["payload"]))
        statement["predicate"]["buildDefinition"]["externalParameters"]["version"] = "9.9.9"
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        layers[0] = Layer(DSSE_MEDIA_TYPE, json.dumps(envelope).encode(), layers[0].annotations)
        client.push_artifact(repository, tag, layers)
    with pytest.raises(VerificationError, match="DSSE signature does not verify"):
        verify(fresh_release, "frontend")


def test_unsigned_image_fails_verification(fresh_release: ReleaseManifest) -> None:
    image = fresh_release.image("backend")
    registry = registry_for(fresh_release)
    with registry.get_client() as client:
        client.push_artifact(registry.repository("backend"), signature_tag(image.digest, "sig"), [])
    with pytest.raises(VerificationError, match="no signature found"):
        verify(fresh_release, "backend")


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "message"),
    [
        ("unknown component", {"components": ["worker"]}, ConfigError, "unknown component 'worker'"),
        ("shell metacharacters in ref", {"git_ref": "main;reboot"}, ConfigError, "invalid git ref"),
        ("bad version tag", {"version": "-1"}, ConfigError, "invalid image tag"),
        ("missing app config", {"app_config": "/nonexistent/delivery.yaml"}, ConfigError, "does not exist"),
    ],
)
def test_bad_input_fails_with_a_named_problem(
    local_stack: StackSettings,
    prefect_harness: None,
    tmp_path: Path,
    name: str,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        publish(tmp_path, local_stack, **kwargs)


def test_invalid_image_reference_from_block_is_named(
    local_stack: StackSettings, prefect_harness: None, tmp_path: Path
) -> None:
    OciRegistry(host="127.0.0.1:5000", namespace="Team Space").save("bad-namespace")
    with pytest.raises(ConfigError, match=r"invalid image reference '127\.0\.0\.1:5000/Team Space/backend:1\.0\.0'"):
        build_and_publish(registry_block="bad-namespace", releases_dir=str(tmp_path))


def test_registry_down_fails_after_retries(local_stack: StackSettings, prefect_harness: None, tmp_path: Path) -> None:
    OciRegistry(host="127.0.0.1:9", namespace="down").save("down-registry")
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:9"):
        build_and_publish(registry_block="down-registry", releases_dir=str(tmp_path))


def sample_app_copy(tmp_path: Path) -> Path:
    """The sample app in a git repository of its own, to edit without touching ours."""
    app = tmp_path / "app"
    shutil.copytree(SAMPLE_APP, app, ignore=shutil.ignore_patterns("__pycache__", ".reports", ".coverage"))
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.email=t@e", "-c", "user.name=t", "commit", "-q", "-m", "app"],
    ):
        subprocess.run(["git", "-C", str(app), *args], check=True)
    return app


def test_malformed_ignore_file_stops_the_flow(
    local_stack: StackSettings, prefect_harness: None, tmp_path: Path
) -> None:
    app = sample_app_copy(tmp_path)
    (app / ".trivyignore.yaml").write_text("ignores:\n  - id: CVE-2024-1\n    expires: 2027-01-01\n")
    with pytest.raises(ConfigError, match=r"ignores\.0\.reason"):
        publish(tmp_path, local_stack, app_config=str(app / "delivery.yaml"))


def test_leaked_secret_blocks_the_release(local_stack: StackSettings, prefect_harness: None, tmp_path: Path) -> None:
    """Real trivy finds the key: nothing is signed and no release manifest is published.

    Builds run beside the source scans, so images may already sit in the registry,
    unsigned and by digest only: `deliver` refuses anything unsigned.
    """
    app = sample_app_copy(tmp_path)
    (app / "backend" / "deploy.env").write_text("AWS_ACCESS_KEY_ID=AKIA2E0A8F3B244C9986\n")
    blocks = save_blocks(tmp_path, local_stack.registry_host)
    with pytest.raises(GateFailedError, match="aws-access-key-id"):
        build_and_publish(releases_dir=str(tmp_path / "releases"), app_config=str(app / "delivery.yaml"), **blocks)
    sarif = json.loads(next((tmp_path / "releases").rglob("source.sarif")).read_text())
    assert any(r["ruleId"] == "aws-access-key-id" for run in sarif["runs"] for r in run["results"])
    assert not list((tmp_path / "releases").rglob("latest.json"))
    namespace = OciRegistry.load(blocks["registry_block"]).namespace  # type: ignore[union-attr]
    registry = f"http://{local_stack.registry_host}/v2"
    auth = local_stack.registry_credentials()
    catalog = httpx.get(f"{registry}/_catalog", timeout=10, auth=auth).json()["repositories"]
    repositories = [r for r in catalog if r.startswith(f"{namespace}/")]
    for repository in repositories:
        tags = httpx.get(f"{registry}/{repository}/tags/list", timeout=10, auth=auth).json().get("tags") or []
        assert not [t for t in tags if t.endswith((".sig", ".att"))], f"{repository} was signed: {tags}"


def test_failing_unit_test_fails_quality_with_output_tail(
    local_stack: StackSettings, prefect_harness: None, tmp_path: Path
) -> None:
    app = sample_app_copy(tmp_path)
    (app / "tests" / "test_broken.py").write_text('def test_broken():\n    assert 1 == 2, "deliberately broken"\n')
    subprocess.run(["git", "-C", str(app), "add", "."], check=True)
    with pytest.raises(CommandFailedError, match=r"(?s)'-m', 'pytest'.*deliberately broken") as failure:
        publish(tmp_path, local_stack, app_config=str(app / "delivery.yaml"))
    assert failure.value.returncode == 1


def test_missing_dockerfile_is_named(tmp_path: Path) -> None:
    app = sample_app_copy(tmp_path)
    (app / "frontend" / "Dockerfile").unlink()
    from medianest_delivery.appconfig import load_app_config

    with pytest.raises(ConfigError, match=r"component 'frontend': Dockerfile .*frontend/Dockerfile does not exist"):
        load_app_config(app / "delivery.yaml")


def test_unenforced_gates_never_sign(local_stack: StackSettings, prefect_harness: None, tmp_path: Path) -> None:
    """enforce_gates=False reports findings without stopping, and signs nothing: deliver would refuse the images."""
    blocks = save_blocks(tmp_path, local_stack.registry_host)
    manifest = build_and_publish(releases_dir=str(tmp_path / "releases"), enforce_gates=False, **blocks)
    assert manifest.images
    assert all(image.signature is None and not image.verified for image in manifest.images)
    namespace = OciRegistry.load(blocks["registry_block"]).namespace  # type: ignore[union-attr]
    registry = f"http://{local_stack.registry_host}/v2"
    for image in manifest.images:
        repository = image.repository.split("/", 1)[1]
        assert repository.startswith(f"{namespace}/")
        tags = httpx.get(f"{registry}/{repository}/tags/list", timeout=10).json().get("tags") or []
        assert not [t for t in tags if t.endswith((".sig", ".att"))], tags


def test_two_commits_of_a_repository_served_by_git_daemon_build_concurrently_as_recorded(
    local_stack: StackSettings, prefect_harness: None, tmp_path: Path
) -> None:
    """The sample app as a repository of its own, served by `git daemon` on 127.0.0.1 and checked out nowhere
    here: a tag and a branch head are built at once, each from its own worktree, and each release records the
    repository, the full ref and the commit it was built from (manifest and provenance)."""
    from concurrent.futures import ThreadPoolExecutor

    from medianest_delivery.release.workspace import SourceWorkspace
    from tests.helpers import git_daemon, served_app_repository

    bare, work = served_app_repository(tmp_path)

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True, text=True).stdout

    git("tag", "v1")
    (work / "NOTES.md").write_text("after v1\n")
    git("add", ".")
    git("commit", "-q", "-m", "after v1")
    git("push", "-q", "origin", "main", "v1")
    shas = {"v1": git("rev-parse", "v1^{commit}").strip(), "main": git("rev-parse", "main").strip()}
    blocks = save_blocks(tmp_path, local_stack.registry_host)
    with git_daemon(bare.parent) as base, ThreadPoolExecutor(max_workers=2) as pool:
        repository = f"{base}/{bare.name}"
        futures = {
            ref: pool.submit(
                build_and_publish,
                repository=repository,
                git_ref=ref,
                version=f"2.0.0-{ref}",
                releases_dir=str(tmp_path / "releases"),
                **blocks,
            )
            for ref in ("v1", "main")
        }
        manifests = {ref: future.result() for ref, future in futures.items()}
    for ref, full_ref in (("v1", "refs/tags/v1"), ("main", "refs/heads/main")):
        manifest = manifests[ref]
        assert manifest.git_sha == shas[ref]
        assert manifest.git_ref == full_ref
        assert manifest.source_repository == repository.removesuffix(".git")  # recorded as the repository
        assert manifest.app_config_path == "delivery.yaml"
        assert not manifest.source_dirty
        tree = SourceWorkspace(local_stack.sources_dir).tree_path(repository, shas[ref])
        assert (tree / "NOTES.md").exists() == (ref == "main")
    client = docker.DockerClient(base_url=local_stack.docker_host)
    for ref, manifest in manifests.items():
        image = manifest.image("backend")
        labels = client.images.pull(image.reference, auth_config=registry_for(manifest).docker_auth()).labels
        assert labels["org.opencontainers.image.revision"] == shas[ref]
        assert labels["org.opencontainers.image.source"] == repository.removesuffix(".git")
    client.close()
