"""The embedded local stack: dockerd, an OCI registry, the Prefect server, Prometheus, a two-node Swarm, the base image.

`stack_up` starts, in order, every component that does not answer; `stack_down`
stops, in reverse, only the processes this project started. Everything binds to
127.0.0.1 and keeps its data under ``StackSettings.state_dir``.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable

from medianest_delivery.localstack.archived_cluster import ArchivedCluster
from medianest_delivery.localstack.base_image import BaseImage
from medianest_delivery.localstack.component import ComponentStatus, StackComponent
from medianest_delivery.localstack.prefect_api import prefect_client_env
from medianest_delivery.localstack.processes import (
    DockerEngine,
    PrefectServer,
    PrometheusServer,
    Pushgateway,
    RegistryServer,
    S3Emulator,
)
from medianest_delivery.localstack.routers import EnvironmentRouters
from medianest_delivery.localstack.swarm import LocalSwarm
from medianest_delivery.localstack.system_postgres import SystemPostgres
from medianest_delivery.settings import StackSettings


def components(settings: StackSettings) -> list[StackComponent]:
    """In start order: the base image needs dockerd; the Prefect server needs PostgreSQL's passwords."""
    return [
        SystemPostgres(settings),
        DockerEngine(settings),
        RegistryServer(settings),
        PrefectServer(settings),
        PrometheusServer(settings),
        Pushgateway(settings),
        S3Emulator(settings),
        LocalSwarm(settings),
        ArchivedCluster(settings),
        BaseImage(settings),
        EnvironmentRouters(settings),
    ]


def stack_up(
    settings: StackSettings,
    only: set[str] | None = None,
    report: Callable[[str, float], None] | None = None,
) -> list[ComponentStatus]:
    """Start every component that does not already answer and restart stale ones we own.

    A second call is a no-op. `report(name, seconds)` hears how long each component took
    (the first run builds the base image and the archiver: minutes, not seconds).
    """
    for component in components(settings):
        if only and component.name not in only:
            continue
        started = time.monotonic()
        component.start()
        if report is not None:
            report(component.name, time.monotonic() - started)
    return stack_status(settings)


def stack_down(settings: StackSettings) -> list[str]:
    """Stop, in reverse order, only the processes this project started."""
    return [c.name for c in reversed(components(settings)) if c.stop()]


def stack_status(settings: StackSettings) -> list[ComponentStatus]:
    return [c.status() for c in components(settings)]


def export_environment(settings: StackSettings) -> dict[str, str]:
    """Variables that point docker clients and Prefect (with the server's credentials) at this stack."""
    return {"DOCKER_HOST": settings.docker_host, **prefect_client_env(settings)}


def shell_exports(settings: StackSettings) -> list[str]:
    """`export` lines for a shell; secrets are read from their 0600 files when the shell runs them, never printed."""
    lines = []
    for key, value in export_environment(settings).items():
        if key == "PREFECT_API_AUTH_STRING":
            value = f'"$(cat {shlex.quote(str(settings.prefect_auth_file))})"'
        lines.append(f"export {key}={value}")
    return lines
