"""Where images are pushed and how to authenticate."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from medianest_delivery.release.registry import RegistryClient
from medianest_delivery.release.trust import is_loopback_host
from medianest_delivery.settings import StackSettings


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

    def credentials(self) -> tuple[str, str] | None:
        """The block's own user and password; for the local stack's registry with none set, the stack's.

        Read at use time from the stack's 0600 file, so no copy is ever stored in a block document.
        """
        if self.username and self.password:
            return self.username, self.password.get_secret_value()
        if self.username is None and self.password is None:
            stack = StackSettings()
            if self.host == stack.registry_host:
                return stack.registry_credentials()
        return None

    def get_client(self) -> RegistryClient:
        user, password = self.credentials() or (None, None)
        return RegistryClient(self.host, username=user, password=password, insecure=self.plain_http)

    def docker_auth(self) -> dict[str, str] | None:
        credentials = self.credentials()
        return {"username": credentials[0], "password": credentials[1]} if credentials else None

    def trivy_env(self) -> dict[str, str]:
        """What trivy reads its registry credentials from (the environment, never its command line)."""
        credentials = self.credentials()
        return {"TRIVY_USERNAME": credentials[0], "TRIVY_PASSWORD": credentials[1]} if credentials else {}
