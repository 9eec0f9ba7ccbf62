"""Which Prefect API this process talks to: the configured one, or the local stack's server.

Prefect reads its settings once, at first use; setting PREFECT_API_URL in
os.environ afterwards changes nothing in this process (only in children it
starts). These set the API in Prefect's settings context instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from medianest_delivery.settings import StackSettings


def prefect_client_env(settings: StackSettings) -> dict[str, str]:
    """Environment for a child process (worker, CLI, flow) that talks to ``settings.prefect_api_url``.

    The stack's credentials go only to the stack's own server, never to another PREFECT_API_URL.
    """
    env = {"PREFECT_API_URL": settings.prefect_api_url}
    auth = settings.prefect_auth_string()
    if auth and settings.prefect_api_url.rstrip("/") == settings.stack_prefect_api_url:
        env["PREFECT_API_AUTH_STRING"] = auth
    return env


@contextlib.contextmanager
def stack_prefect_settings(settings: StackSettings) -> Iterator[None]:
    """Prefect clients made inside talk to the stack's server, whatever the process's profile says."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
    from prefect.settings.legacy import Setting

    updates: dict[Setting, object] = {PREFECT_API_URL: settings.prefect_api_url}
    auth = prefect_client_env(settings).get("PREFECT_API_AUTH_STRING")
    if auth:
        updates[PREFECT_API_AUTH_STRING] = auth
    with temporary_settings(updates=updates):
        yield


@contextlib.contextmanager
def configured_or_stack_prefect(settings: StackSettings) -> Iterator[None]:
    """The Prefect API this process is configured for (environment or profile), else the stack's server.

    Setting PREFECT_API_URL in os.environ instead would come too late: Prefect reads its settings once.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY, PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    auth = settings.prefect_auth_string()
    if configured and configured.rstrip("/") == settings.stack_prefect_api_url and auth:
        # The stack's own server, named by URL only: add its credentials unless others are configured.
        if PREFECT_API_AUTH_STRING.value() or PREFECT_API_KEY.value():
            yield
        else:
            with temporary_settings(updates={PREFECT_API_AUTH_STRING: auth}):
                yield
    elif configured:
        yield
    else:
        with stack_prefect_settings(settings):
            yield
