"""Loading and validating an app's delivery.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.appconfig import load_app_config
from medianest_delivery.errors import ConfigError
from tests.helpers import SAMPLE_APP


def test_sample_app_config_loads() -> None:
    """The sample app's config lists its components in order, with dependencies and the coverage minimum."""
    config = load_app_config(SAMPLE_APP / "delivery.yaml")
    assert [c.name for c in config.components] == ["backend", "frontend"]
    assert config.component("frontend").depends_on == ["backend"]
    assert config.quality.coverage_min == 85


def write_config(tmp_path: Path, body: str) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    path = tmp_path / "delivery.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("name", "body", "message"),
    [
        ("not yaml", "name: [", "not valid YAML"),
        ("not a mapping", "- a", "mapping"),
        ("no components", "name: app\ncomponents: []\n", "components"),
        ("bad port", "name: app\ncomponents:\n  - {name: api, port: 0}\n", "port"),
        ("bad name", "name: app\ncomponents:\n  - {name: 'API;x', port: 80}\n", "component name"),
        ("unknown dependency", "name: app\ncomponents:\n  - {name: web, port: 80, depends_on: [api]}\n", "unknown"),
        ("duplicate", "name: app\ncomponents:\n  - {name: a, port: 80}\n  - {name: a, port: 81}\n", "duplicate"),
        ("unknown field", "name: app\ncomponents:\n  - {name: a, port: 80, dockerfle: x}\n", "dockerfle"),
        (
            "missing dockerfile",
            "name: app\ncomponents:\n  - {name: a, port: 80, dockerfile: nope/Dockerfile}\n",
            "does not exist",
        ),
        (
            "command as string",
            "name: app\nquality:\n  commands:\n    - {name: x, argv: 'ls -l'}\ncomponents:\n  - {name: a, port: 80}\n",
            "argv",
        ),
    ],
)
def test_bad_app_configs_name_the_problem(tmp_path: Path, name: str, body: str, message: str) -> None:
    """Each kind of broken config is a ConfigError whose message names what is wrong."""
    with pytest.raises(ConfigError, match=message):
        load_app_config(write_config(tmp_path, body))


def test_missing_config_file(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError saying so."""
    with pytest.raises(ConfigError, match="does not exist"):
        load_app_config(tmp_path / "nope.yaml")


def test_unknown_component_is_named() -> None:
    """Selecting a component the app lacks names it and lists the known ones."""
    config = load_app_config(SAMPLE_APP / "delivery.yaml")
    with pytest.raises(ConfigError, match=r"unknown component 'worker'.*known: backend, frontend"):
        config.select(["worker"])


def test_quality_needs_must_name_earlier_commands(tmp_path: Path) -> None:
    """A quality command may only need commands listed before it; the error names both."""
    body = (
        "name: app\nquality:\n  commands:\n    - {name: report, argv: [x], needs: [tests]}\n"
        "    - {name: tests, argv: [y]}\ncomponents:\n  - {name: a, port: 80}\n"
    )
    with pytest.raises(ConfigError, match=r"'report' needs \['tests'\], which are not listed before it"):
        load_app_config(write_config(tmp_path, body))


@pytest.mark.parametrize("field", ["health", "ready", "metrics", "openapi"])
@pytest.mark.parametrize("value", ["/health\n    server evil 127.0.0.9:80", "/a b", "health", "/x\r"])
def test_component_paths_cannot_inject_lines(field: str, value: str) -> None:
    """A health path with a newline would add lines to haproxy.cfg: every component path must be a plain URL path."""
    from pydantic import ValidationError

    from medianest_delivery.appconfig import Component

    with pytest.raises(ValidationError, match="is not a URL path"):
        Component(name="api", port=8000, **{field: value})
    with pytest.raises(ValidationError, match="is not a URL path"):
        Component(name="api", port=8000, smoke=["/ok", value])
