"""Where images are pushed and how to authenticate."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from medianest_delivery.release.registry import RegistryClient
from medianest_delivery.release.trust import is_loopback_host


class OciRegistry(Block):
    """An OCI registry (the local docker-registry, GHCR, ...) and a namespace in it."""

    _block_type_name = "MediaNest OCI Registry"

    host: str = Field(default="127.0.0.1:5000", description="registry host[:port], no scheme")
    namespace: str = Field(default="medianest", description="repository prefix, e.g. the GHCR org")
    username: str | None = Field(default=None, description="registry user (None: anonymous)")
    password: SecretStr | None = Field(default=None, description="registry password or token")
    insecure: bool | None = Field(
        default=None, description="plain HTTP; default: only for a loopback registry (127.0.0.0/8, ::1, localhost)"
    )

    @property
    def plain_http(self) -> bool:
        """TLS everywhere except loopback, unless the block says otherwise."""
        return is_loopback_host(self.host) if self.insecure is None else self.insecure

    def repository(self, component: str) -> str:
        return f"{self.namespace}/{component}" if self.namespace else component

    def image_name(self, component: str) -> str:
        return f"{self.host}/{self.repository(component)}"

    def get_client(self) -> RegistryClient:
        return RegistryClient(
            self.host,
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            insecure=self.plain_http,
        )

    def docker_auth(self) -> dict[str, str] | None:
        if self.username and self.password:
            return {"username": self.username, "password": self.password.get_secret_value()}
        return None
