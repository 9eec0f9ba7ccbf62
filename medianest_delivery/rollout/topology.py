"""Where each environment's router, slots and replicas listen, and in what order components ship.

Every environment owns a block of 1000 loopback ports. Component ``i`` gets
``base + 100*i`` for its router frontend and two slots of replicas after it:

    production (base 19000), backend (i=0): router 19000, slot a 19011-19014, slot b 19021-19024
                             frontend (i=1): router 19100, slot a 19111-..., slot b 19121-...
    router stats/metrics: base + 990

Replica ``r`` listens on ``...(r+1)``: a Swarm service can only make a port by
appending its task slot (1, 2, ...) to a prefix (``PORT=1901{{.Task.Slot}}``), and
both runtimes use one layout.

A rollout always puts the new release in the slot that is not stable, so
canary and blue-green share one mechanism: move weight, then flip roles.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from medianest_delivery.appconfig import Component
from medianest_delivery.errors import ConfigError

SLOTS = ("a", "b")
MAX_REPLICAS = 4
KNOWN_ENVIRONMENTS = {"staging": 18000, "production": 19000}
PREVIEW_BASE, PREVIEW_COUNT = 30000, 20


@dataclass(frozen=True)
class EnvironmentPlan:
    name: str
    base_port: int

    def router_port(self, component_index: int) -> int:
        return self.base_port + 100 * component_index

    def replica_port(self, component_index: int, slot: str, replica: int) -> int:
        if slot not in SLOTS:
            raise ConfigError(f"unknown slot {slot!r}; slots are {SLOTS}")
        if not 0 <= replica < MAX_REPLICAS:
            raise ConfigError(f"replica {replica} out of range 0..{MAX_REPLICAS - 1}")
        return self.base_port + 100 * component_index + 10 * (SLOTS.index(slot) + 1) + replica + 1

    def router_url(self, component_index: int) -> str:
        return f"http://127.0.0.1:{self.router_port(component_index)}"

    @property
    def stats_port(self) -> int:
        return self.base_port + 990


def other_slot(slot: str) -> str:
    return SLOTS[1 - SLOTS.index(slot)]


# What `preview_name` makes of a branch: it becomes a path, a PromQL label and a database name.
PREVIEW_NAME = re.compile(r"^preview-[a-z0-9](?:[a-z0-9-]{0,29}[a-z0-9])?$")


def is_preview(name: str) -> bool:
    return bool(PREVIEW_NAME.match(name))


def environment_plan(name: str, preview_index: int | None = None) -> EnvironmentPlan:
    """staging and production have fixed ports; a preview gets the port block it was allocated."""
    if name in KNOWN_ENVIRONMENTS:
        return EnvironmentPlan(name, KNOWN_ENVIRONMENTS[name])
    if is_preview(name):
        if preview_index is None or not 0 <= preview_index < PREVIEW_COUNT:
            raise ConfigError(f"preview {name!r} needs a port block 0..{PREVIEW_COUNT - 1} (allocate one first)")
        return EnvironmentPlan(name, PREVIEW_BASE + 1000 * preview_index)
    raise ConfigError(
        f"unknown environment {name!r}: use staging, production or preview-<slug> "
        "(lowercase letters, digits and inner '-', at most 39 characters)"
    )


def allocate_preview(name: str, allocations: dict[str, int]) -> dict[str, int]:
    """Keep ``name``'s block, or give it the lowest free one; raises when all are taken.

    >>> allocate_preview("preview-b", {"preview-a": 0})
    {'preview-a': 0, 'preview-b': 1}
    """
    if name in allocations:
        return allocations
    used = set(allocations.values())
    free = [i for i in range(PREVIEW_COUNT) if i not in used]
    if not free:
        raise ConfigError(f"all {PREVIEW_COUNT} preview port blocks are in use: tear a preview down first")
    return {**allocations, name: free[0]}


def release_order(components: list[Component]) -> list[Component]:
    """Dependencies first (the backend before the frontend that calls it); stable for ties."""
    by_name = {c.name: c for c in components}
    ordered: list[Component] = []
    visiting: set[str] = set()

    def visit(component: Component) -> None:
        if component in ordered:
            return
        if component.name in visiting:
            raise ConfigError(f"dependency cycle through component {component.name!r}")
        visiting.add(component.name)
        for dependency in component.depends_on:
            if dependency in by_name:
                visit(by_name[dependency])
        visiting.discard(component.name)
        ordered.append(component)

    for component in components:
        visit(component)
    return ordered
