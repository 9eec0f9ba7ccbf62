"""Session fixtures: one Prefect test harness, the real local stack for integration tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from medianest_delivery.settings import StackSettings

# As in the Makefile: the test harness's server must not try to phone home (no internet here).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return StackSettings()


@pytest.fixture(scope="session")
def local_stack(stack_settings: StackSettings) -> StackSettings:
    """The real dockerd, registry and base image (idempotent: `make test` started them)."""
    from medianest_delivery.localstack.stack import stack_up

    stack_up(stack_settings, {"docker", "registry", "base-image"})
    os.environ["DOCKER_HOST"] = stack_settings.docker_host
    return stack_settings


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for all flow tests (startup is slow, so once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
