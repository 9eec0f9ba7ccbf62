"""Docker image builds and pushes through the Docker Engine API (docker SDK)."""

from __future__ import annotations

import time
from pathlib import Path

import docker.errors
from prefect import task
from prefect.logging import get_run_logger
from prefect_docker import DockerHost

from blocks.registry import OciRegistry
from medianest_delivery.errors import CommandFailedError, ConfigError, RegistryError, StackError
from medianest_delivery.release.refs import require_digest, require_tag
from tasks.policies import CACHE_EXPIRATION, digest_key, retry_on

OCI = "org.opencontainers.image"


def oci_labels(*, revision: str, source: str, created: str, version: str, title: str) -> dict[str, str]:
    """OCI annotation labels; ``created`` is the commit time so rebuilds are reproducible."""
    return {
        f"{OCI}.revision": revision,
        f"{OCI}.source": source,
        f"{OCI}.created": created,
        f"{OCI}.version": version,
        f"{OCI}.title": title,
    }


@task(name="inspect-base-image", task_run_name="build: inspect base image", retries=2, retry_delay_seconds=2)
def inspect_base_image(docker_host: DockerHost, base_image: str) -> str:
    """Image id of the base image (part of every build's cache key)."""
    client = docker_host.get_client()
    try:
        return str(client.images.get(base_image).id)
    except docker.errors.ImageNotFound as exc:
        raise StackError(f"base image {base_image} is missing: run `medianest-delivery stack up`") from exc
    except docker.errors.DockerException as exc:
        raise StackError(f"Docker Engine at {docker_host.base_url} is unreachable: {exc}") from exc
    finally:
        client.close()


@task(name="local-base-images", task_run_name="policy: local stack base images")
def local_stack_base_images(docker_host: DockerHost, base_image: str, built_ids_file: str) -> list[str]:
    """Ids of the base images the local stack built: the one tagged now, and those it recorded building."""
    record = Path(built_ids_file)
    ids = set(record.read_text().split()) if record.is_file() else set()
    client = docker_host.get_client()
    try:
        ids.add(str(client.images.get(base_image).id))
    except docker.errors.ImageNotFound:
        pass  # never built here: only the recorded ids count
    except docker.errors.DockerException as exc:
        raise StackError(f"Docker Engine at {docker_host.base_url} is unreachable: {exc}") from exc
    finally:
        client.close()
    return sorted(ids)


@task(
    name="build-image",
    task_run_name="build: {component}",
    cache_key_fn=digest_key("component", "context_digest", "dockerfile", "base_image_id", "labels"),
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
    retries=1,
    retry_delay_seconds=2,
)
def build_image(
    component: str,
    context: str,
    dockerfile: str,
    context_digest: str,
    base_image: str,
    base_image_id: str,
    labels: dict[str, str],
    docker_host: DockerHost,
) -> str:
    """Multi-stage build with layer caching; returns the local image id."""
    client = docker_host.get_client()
    started = time.perf_counter()
    try:
        image, _log = client.images.build(
            path=context,
            dockerfile=dockerfile,
            buildargs={"BASE_IMAGE": base_image, "VERSION": labels[f"{OCI}.version"]},
            labels=labels,
            rm=True,
            forcerm=True,
            pull=False,
            tag=f"medianest-build/{component}:{labels[f'{OCI}.revision'][:12]}",
        )
    except docker.errors.BuildError as exc:
        lines = [str(chunk.get("stream") or chunk.get("error") or "") for chunk in exc.build_log]
        raise CommandFailedError(["docker", "build", "-f", dockerfile, context], 1, "".join(lines)) from exc
    except docker.errors.APIError as exc:
        raise ConfigError(f"docker build of {component} failed: {exc.explanation}") from exc
    finally:
        client.close()
    get_run_logger().info("built %s as %s in %.1fs", component, image.id, time.perf_counter() - started)
    return str(image.id)


@task(
    name="push-image",
    task_run_name="push: {component}",
    cache_key_fn=digest_key("image_id", "repository", "tags"),
    cache_expiration=CACHE_EXPIRATION,
    persist_result=True,
    retries=3,
    retry_delay_seconds=[1, 2, 4],
    retry_condition_fn=retry_on(RegistryError),
)
def push_image(
    component: str, image_id: str, repository: str, tags: list[str], registry: OciRegistry, docker_host: DockerHost
) -> str:
    """Tag and push; returns the manifest digest, the only address used from here on."""
    for tag in tags:
        require_tag(tag)
    client = docker_host.get_client()
    digest: str | None = None
    try:
        image = client.images.get(image_id)
        for tag in tags:
            image.tag(repository, tag)
            for event in client.images.push(
                repository, tag, stream=True, decode=True, auth_config=registry.docker_auth()
            ):
                if "error" in event:
                    raise RegistryError(f"push of {repository}:{tag} failed: {event['error']}")
                aux = event.get("aux") or {}
                if aux.get("Digest"):
                    digest = require_digest(aux["Digest"])
    except docker.errors.APIError as exc:
        raise RegistryError(f"push of {repository} failed: {exc.explanation}") from exc
    finally:
        client.close()
    if digest is None:
        raise RegistryError(f"registry did not report a digest for {repository}")
    get_run_logger().info("pushed %s@%s (tags %s)", repository, digest, ", ".join(tags))
    return digest


@task(name="image-reference", task_run_name="push: reference")
def image_reference(image_name: str, digest: str) -> str:
    """``registry/repo@sha256:...``: from here on images are addressed by digest only."""
    return f"{image_name}@{digest}"
