"""Save blocks that point build-and-publish away from the local stack.

Run with the target Prefect server in PREFECT_API_URL:

    GHCR_USER=... GHCR_TOKEN=... COSIGN_PASSWORD=... \
        .venv/bin/python deployments/blocks.example.py

then pass `registry_block="ghcr"`, `signing_key_block="release-key"` and
`docker_host_block="build-host"` as flow parameters (or in prefect.yaml).
"""

from __future__ import annotations

import os
from pathlib import Path

from prefect_docker import DockerHost
from pydantic import SecretStr

from blocks import OciRegistry, SigningKey


def main() -> None:
    OciRegistry(
        host="ghcr.io",
        namespace=os.environ.get("GHCR_NAMESPACE", "medianest"),
        username=os.environ["GHCR_USER"],
        password=SecretStr(os.environ["GHCR_TOKEN"]),
        insecure=False,
    ).save("ghcr", overwrite=True)
    SigningKey(
        private_key_pem=SecretStr(Path(os.environ.get("COSIGN_KEY", "cosign.key")).read_text()),
        password=SecretStr(os.environ["COSIGN_PASSWORD"]),
        public_key_pem=Path(os.environ.get("COSIGN_PUB", "cosign.pub")).read_text(),
    ).save("release-key", overwrite=True)
    DockerHost(base_url=os.environ.get("BUILD_DOCKER_HOST", "unix:///var/run/docker.sock")).save(
        "build-host", overwrite=True
    )


if __name__ == "__main__":
    main()
