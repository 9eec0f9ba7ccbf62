"""The sample app's base image: mmdebstrap from the apt mirror, then docker import (no registry to pull from)."""

from __future__ import annotations

from typing import Any

from medianest_delivery.errors import StackError
from medianest_delivery.localstack.component import ComponentStatus
from medianest_delivery.proc import run_command, which_or_raise
from medianest_delivery.settings import StackSettings

BASE_IMAGE_PACKAGES = ("python3", "python3-psycopg", "python3-prometheus-client")
# Docs and locales are dead weight in container images.
_DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")


class BaseImage:
    """The sample app's base image: mmdebstrap from the apt mirror, then docker import."""

    name = "base-image"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    def _client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.settings.docker_host, timeout=600)

    def status(self) -> ComponentStatus:
        import docker

        try:
            client = self._client()
            image = client.images.get(self.settings.base_image)
            return ComponentStatus(self.name, True, self.settings.base_image, False, image.short_id)
        except docker.errors.ImageNotFound:
            return ComponentStatus(self.name, False, self.settings.base_image, False, "missing")
        except Exception as exc:  # noqa: BLE001 - docker down
            return ComponentStatus(self.name, False, self.settings.base_image, False, f"docker unreachable: {exc}")

    def start(self) -> None:
        if self.status().running:
            return
        mmdebstrap = which_or_raise("mmdebstrap", "Install Debian's mmdebstrap (make deps).")
        out_dir = self.settings.state_dir / "base-image"
        out_dir.mkdir(parents=True, exist_ok=True)
        tarball = out_dir / "base.partial.tar"  # mmdebstrap picks the format from the name
        tarball.unlink(missing_ok=True)  # left by a killed run
        argv = [
            mmdebstrap,
            "--variant=apt",
            "--include=" + ",".join(BASE_IMAGE_PACKAGES),
            *[f"--dpkgopt=path-exclude={p}" for p in _DPKG_EXCLUDES],
            "bookworm",
            str(tarball),
            self.settings.debian_mirror,
        ]
        run_command(argv, timeout=900)
        repository, _, tag = self.settings.base_image.rpartition(":")
        client = self._client()
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
        tarball.unlink(missing_ok=True)
        if not self.status().running:
            raise StackError(f"docker import did not produce {self.settings.base_image}")
        self.record_built(str(client.images.get(self.settings.base_image).id))

    def record_built(self, image_id: str) -> None:
        """Remember the id: releases built on an earlier base stay deployable (rollback) under the policy's
        ``base_images.local_stack``."""
        with self.settings.built_base_images_file.open("a") as record:
            record.write(image_id + "\n")

    def stop(self) -> bool:
        return False  # images are data, not processes: `down` keeps them
