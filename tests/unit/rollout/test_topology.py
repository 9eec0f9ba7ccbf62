"""Port plans per environment, preview port blocks and the order components are released in."""

from __future__ import annotations

import pytest

from medianest_delivery.appconfig import Component
from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.topology import (
    PREVIEW_COUNT,
    allocate_preview,
    environment_plan,
    other_slot,
    release_order,
)


def test_production_ports() -> None:
    """Production's router, replica and stats ports follow its fixed block; slot a's other slot is b."""
    plan = environment_plan("production")
    assert (plan.router_port(0), plan.replica_port(0, "a", 0), plan.replica_port(0, "b", 3)) == (19000, 19011, 19024)
    assert plan.router_port(1) == 19100
    assert plan.stats_port == 19990
    assert other_slot("a") == "b"


@pytest.mark.parametrize(
    ("name", "message"),
    [("qa", "unknown environment"), ("preview-", "unknown environment"), ("preview-x", "needs a port block")],
)
def test_bad_environments(name: str, message: str) -> None:
    """An unknown name, or a preview without an allocated port block, is a ConfigError saying which."""
    with pytest.raises(ConfigError, match=message):
        environment_plan(name)


def test_replica_bounds() -> None:
    """A replica index past the last one, or a slot other than a/b, has no port."""
    with pytest.raises(ConfigError, match="replica 4 out of range"):
        environment_plan("staging").replica_port(0, "a", 4)
    with pytest.raises(ConfigError, match="unknown slot"):
        environment_plan("staging").replica_port(0, "c", 0)


def test_preview_allocation_reuses_and_fills_gaps() -> None:
    """A preview keeps its block, a new one takes the lowest free block, and none is left when all are taken."""
    allocations = allocate_preview("preview-a", {})
    allocations = allocate_preview("preview-b", allocations)
    assert allocate_preview("preview-a", allocations) == {"preview-a": 0, "preview-b": 1}
    del allocations["preview-a"]
    assert allocate_preview("preview-c", allocations)["preview-c"] == 0
    full = {f"preview-{i}": i for i in range(PREVIEW_COUNT)}
    with pytest.raises(ConfigError, match="port blocks are in use"):
        allocate_preview("preview-new", full)
    assert environment_plan("preview-b", 1).base_port == 31000


def component(name: str, depends_on: list[str] | None = None) -> Component:
    return Component(name=name, port=80, depends_on=depends_on or [])


@pytest.mark.parametrize(
    ("name", "components", "expected"),
    [
        ("frontend after backend", [component("frontend", ["backend"]), component("backend")], ["backend", "frontend"]),
        ("independent keep order", [component("b"), component("a")], ["b", "a"]),
        ("chain", [component("c", ["b"]), component("b", ["a"]), component("a")], ["a", "b", "c"]),
    ],
)
def test_release_order(name: str, components: list[Component], expected: list[str]) -> None:
    """Dependencies are released first; components without a dependency between them keep their order."""
    assert [c.name for c in release_order(components)] == expected


def test_release_order_rejects_cycles() -> None:
    """Components that depend on each other are a ConfigError naming a dependency cycle."""
    with pytest.raises(ConfigError, match="dependency cycle"):
        release_order([component("a", ["b"]), component("b", ["a"])])


@pytest.mark.parametrize(
    "name",
    [
        "preview-",
        "preview-a/../../etc",
        'preview-x"} or vector(1) or {a="',
        "preview-a\nb",
        "preview-UPPER",
        "prod",
        "preview-a-",
    ],
)
def test_environment_names_that_would_reach_paths_promql_or_urls_are_refused(name: str) -> None:
    """Only staging, production and preview-<slug>: a name becomes a directory, a PromQL label and a database."""
    from medianest_delivery.errors import ConfigError
    from medianest_delivery.rollout.topology import environment_plan, is_preview

    assert not is_preview(name)
    with pytest.raises(ConfigError, match="unknown environment"):
        environment_plan(name)
