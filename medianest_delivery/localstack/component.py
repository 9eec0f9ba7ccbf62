"""What every part of the local stack answers: its status, start and stop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    where: str
    started_by_us: bool
    detail: str = ""
    # Non-empty when what runs was started from another checkout or version of this
    # project (or is otherwise out of date): `up` restarts it if we own it.
    stale: str = ""


class StackComponent(Protocol):
    name: str

    def status(self) -> ComponentStatus: ...

    def start(self) -> None: ...

    def stop(self) -> bool: ...
