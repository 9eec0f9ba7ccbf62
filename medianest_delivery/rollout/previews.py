"""Which preview environment owns which port block, in a small JSON file under a file lock."""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from medianest_delivery.release.refs import require_git_ref
from medianest_delivery.rollout.topology import EnvironmentPlan, allocate_preview, environment_plan, is_preview


@contextmanager
def _locked(path: Path) -> Iterator[dict[str, int]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.with_suffix(".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        allocations: dict[str, int] = json.loads(path.read_text()) if path.is_file() else {}
        before = dict(allocations)
        yield allocations
        if allocations != before:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(allocations, indent=2, sort_keys=True))
            tmp.replace(path)


def plan_for(environment: str, routers_dir: Path) -> EnvironmentPlan:
    """The environment's ports; a preview seen for the first time is allocated a free block."""
    if not is_preview(environment):
        return environment_plan(environment)
    with _locked(routers_dir / "previews.json") as allocations:
        updated = allocate_preview(environment, allocations)
        allocations.update(updated)
        return environment_plan(environment, allocations[environment])


def release_preview(environment: str, routers_dir: Path) -> None:
    with _locked(routers_dir / "previews.json") as allocations:
        allocations.pop(environment, None)


def preview_name(branch: str) -> str:
    """``feature/Canary-Analysis`` becomes ``preview-feature-canary-analysis`` (at most 39 characters).

    The slug is cut to 31 characters before its dashes are trimmed, so a name never ends in '-'.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", require_git_ref(branch).lower())[:31].strip("-")
    return f"preview-{slug}"
