"""Shared test helpers: fixture paths and loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_APP = REPO_ROOT / "examples" / "medianest"


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


def stack_prefect_env(settings: Any, **extra: str) -> dict[str, str]:
    """This process's environment, pointed (with its credentials) at the stack's Prefect server."""
    import os

    from medianest_delivery.localstack.prefect_api import prefect_client_env

    return {**os.environ, **prefect_client_env(settings), **extra}


def stack_prefect_client(settings: Any) -> Any:
    """A client of the stack's server: Prefect read its settings at import, so it is told URL and credentials."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(settings.prefect_api_url, auth_string=settings.prefect_auth_string())
