"""Where an environment runs: its runtime (a Docker Engine or a Docker Swarm), and its database server.

Save one `EnvironmentTarget` under the environment's name (``staging``,
``production``, ``preview-x``) to move it; without one, staging runs on the
local stack's Swarm and every other environment on the flow's Docker Engine,
all databases on the local system PostgreSQL.
"""

from __future__ import annotations

import logging
from typing import Any, Literal
from urllib.parse import urlsplit

from prefect.blocks.core import Block
from prefect_docker import DockerHost
from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from blocks.registry import OciRegistry
from medianest_delivery.appconfig import DEFAULT_DATABASE_SERVER
from medianest_delivery.dsn import redact_dsn
from medianest_delivery.release.trust import is_loopback_host
from medianest_delivery.rollout.runtime import DockerRuntime, Runtime
from medianest_delivery.rollout.swarm import SwarmRuntime
from medianest_delivery.settings import StackSettings

logger = logging.getLogger(__name__)


class EnvironmentTarget(Block):
    """One environment's runtime and database server (saved under the environment's name)."""

    _block_type_name = "MediaNest Environment Target"
    # A refused value is never echoed in the error (a database URL carries its password).
    model_config = ConfigDict(hide_input_in_errors=True)

    runtime: Literal["docker", "swarm"] = Field(default="docker", description="docker: one engine; swarm: a Swarm")
    docker_host: str | None = Field(
        default=None,
        description="the engine (docker) or a Swarm manager (swarm), e.g. tcp://manager:2376; "
        "default: the flow's engine, or the local stack's Swarm manager",
    )
    tls_ca_cert: str | None = Field(default=None, description="CA certificate file; with TLS the server is verified")
    tls_client_cert: str | None = Field(default=None, description="client certificate file (Docker's --tlscert)")
    tls_client_key: str | None = Field(default=None, description="client key file (Docker's --tlskey)")
    node_docker_hosts: list[str] = Field(
        default_factory=list,
        description="swarm: the nodes' own engines (to kill or read one replica); default: the local Swarm's nodes",
    )
    registry: OciRegistry = Field(
        default_factory=OciRegistry, description="swarm: the registry nodes pull from, with its credentials"
    )
    database_server: SecretStr | None = Field(
        default=None,
        description="postgresql://user[:password]@host:port[?options], no database: each environment's database "
        "is made on it; default: the local system PostgreSQL",
    )

    @field_validator("database_server")
    @classmethod
    def _server_without_database(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        url = value.get_secret_value()
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ValueError(f"database_server {redact_dsn(url)} is not a postgresql://user@host:port URL")
        if parts.path not in ("", "/"):
            raise ValueError(
                f"database_server {redact_dsn(url)} names a database ({parts.path.lstrip('/')}); give the server "
                "only: each environment gets its own database on it"
            )
        return value

    @model_validator(mode="after")
    def _remote_engines_use_tls(self) -> EnvironmentTarget:
        """Secrets (the database URL) and registry credentials go to the engine: never over plain TCP off loopback."""
        for host in [self.docker_host or "", *self.node_docker_hosts]:
            parts = urlsplit(host)
            if parts.scheme in ("tcp", "http") and not is_loopback_host(parts.netloc) and not self.tls_ca_cert:
                raise ValueError(
                    f"{host} is a remote Docker API without TLS: set tls_ca_cert (and the client certificate), "
                    "as Docker's --tlsverify does"
                )
        return self

    def tls(self) -> Any:
        import docker.tls

        if not (self.tls_ca_cert or self.tls_client_cert):
            return None
        client_cert = (self.tls_client_cert, self.tls_client_key) if self.tls_client_cert else None
        return docker.tls.TLSConfig(client_cert=client_cert, ca_cert=self.tls_ca_cert, verify=True)

    def database_server_url(self) -> str:
        return self.database_server.get_secret_value() if self.database_server else DEFAULT_DATABASE_SERVER


def default_target(environment: str) -> EnvironmentTarget:
    """Staging on the local stack's Swarm; production and previews on the flow's engine."""
    return EnvironmentTarget(runtime="swarm" if environment == "staging" else "docker")


def saved_target(environment: str) -> EnvironmentTarget | None:
    """The block saved under the environment's name, if any."""
    try:
        block = EnvironmentTarget.load(environment)
    except ValueError:  # Prefect: no block document by that name
        return None
    assert isinstance(block, EnvironmentTarget)
    return block


def environment_target(environment: str) -> EnvironmentTarget:
    return saved_target(environment) or default_target(environment)


def _docker_client(base_url: str, tls: Any = None) -> Any:
    import docker

    return docker.DockerClient(base_url=base_url, tls=tls or False, timeout=60)


def environment_runtime(environment: str, docker_host: DockerHost) -> Runtime:
    """The runtime the environment's target names; ``docker_host`` is the flow's engine."""
    saved = saved_target(environment)
    target = saved or default_target(environment)
    if target.runtime == "docker":
        if target.docker_host:
            return DockerRuntime(_docker_client(target.docker_host, target.tls()))
        return DockerRuntime(docker_host.get_client())
    if saved is None:
        # Staging moved to the Swarm by default: one already running on the engine stays there until its
        # replicas go (a tear-down, or a block saying where it runs), so no release strands its traffic.
        engine = DockerRuntime(docker_host.get_client())
        if engine.list(environment):
            logger.warning(
                "%s still runs on the Docker Engine %s; it stays there (save an EnvironmentTarget %r to move it)",
                environment,
                docker_host.base_url,
                environment,
            )
            return engine
    settings = StackSettings()
    manager = target.docker_host or settings.swarm_manager_host
    nodes = target.node_docker_hosts or (
        [settings.swarm_node_host("manager"), settings.swarm_node_host("worker")] if not target.docker_host else []
    )
    credentials = target.registry.credentials()
    auth = (*credentials, target.registry.host) if credentials else None
    tls = target.tls()
    return SwarmRuntime(lambda: _docker_client(manager, tls), manager, auth, nodes)


def environment_database_server(environment: str) -> str:
    """The server the environment's database lives on (its target's, else the local system PostgreSQL)."""
    return environment_target(environment).database_server_url()
