"""One exclusive holder per stanza or environment: a Prefect global concurrency limit of 1.

A 60 s lease (the server's minimum) that the holder renews while it lives: a
killed run frees the stanza or environment within a minute. Only a timeout
while *acquiring* means "busy"; timeouts inside the protected work are faults
of their own and pass through unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

from medianest_delivery.errors import LockBusyError


def ensure_lock(name: str) -> str:
    """A global concurrency limit of 1 named `name` (strict concurrency needs it to exist)."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)
    return name


@contextlib.contextmanager
def exclusive(name: str, *, timeout_seconds: float, busy: str) -> Iterator[None]:
    """Hold lock `name` for the block; `LockBusyError` with `busy` and the wait when another run holds it."""
    held = contextlib.ExitStack()
    try:
        held.enter_context(
            concurrency(ensure_lock(name), occupy=1, strict=True, lease_duration=60, timeout_seconds=timeout_seconds)
        )
    except TimeoutError as exc:
        raise LockBusyError(f"{busy} (lock {name} held for {timeout_seconds:.0f}s)") from exc
    with held:
        yield
