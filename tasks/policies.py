"""Task policies: cache keys from content digests, and which faults are retried."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext

CACHE_EXPIRATION = dt.timedelta(days=7)


def digest_key(*param_names: str, revision: int = 1) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """Key = task name + the named parameters (which carry content digests).

    Bump ``revision`` when a task's result changes shape, so results cached by an
    older version are not served to code that expects the new fields.
    """

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        material: dict[str, Any] = {name: parameters.get(name) for name in param_names}
        if revision != 1:
            material["__revision__"] = revision
        blob = json.dumps(material, sort_keys=True, default=str).encode()
        return f"{context.task.name}-{hashlib.sha256(blob).hexdigest()}"

    return key


def retry_on(*transient: type[BaseException]) -> Callable[[Any, Any, State[Any]], bool]:
    """A retry_condition_fn: retry only faults of the given (transient) types.

    A tampered signature or a missing image is not going to fix itself: those
    fail at once instead of burning the retry delays.
    """

    def condition(_task: Any, _task_run: Any, state: State[Any]) -> bool:
        error = state.data if isinstance(state.data, BaseException) else None
        if error is None:
            try:
                state.result(raise_on_failure=True)
            except BaseException as exc:  # noqa: BLE001 - we only classify it
                error = exc
        return isinstance(error, transient)

    return condition
