"""Which Prefect API this process talks to: the configured one, or the local stack's server.

Prefect reads its settings once, at first use; setting PREFECT_API_URL in
os.environ afterwards changes nothing in this process (only in children it
starts). These set the API in Prefect's settings context instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from medianest_delivery.settings import StackSettings


@contextlib.contextmanager
def stack_prefect_settings(settings: StackSettings) -> Iterator[None]:
    """Prefect clients made inside talk to the stack's server, whatever the process's profile says."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: settings.prefect_api_url}):
        yield


@contextlib.contextmanager
def configured_or_stack_prefect(settings: StackSettings) -> Iterator[None]:
    """The Prefect API this process is configured for (environment or profile), else the stack's server.

    Setting PREFECT_API_URL in os.environ instead would come too late: Prefect reads its settings once.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        yield
    else:
        with stack_prefect_settings(settings):
            yield
