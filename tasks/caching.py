"""Cache keys built from content digests named in a task's parameters."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any

from prefect.context import TaskRunContext

CACHE_EXPIRATION = dt.timedelta(days=7)


def digest_key(*param_names: str) -> Callable[[TaskRunContext, dict[str, Any]], str]:
    """Key = task name + the named parameters (which carry content digests)."""

    def key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
        material = {name: parameters.get(name) for name in param_names}
        blob = json.dumps(material, sort_keys=True, default=str).encode()
        return f"{context.task.name}-{hashlib.sha256(blob).hexdigest()}"

    return key
