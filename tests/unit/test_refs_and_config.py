"""Validation of image references, git refs and app config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.appconfig import load_app_config
from medianest_delivery.errors import ConfigError
from medianest_delivery.release.refs import parse_image_reference, require_git_ref, require_tag, tag_from_version
from tests.helpers import SAMPLE_APP

DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/medianest/backend:1.0", "127.0.0.1:5000", "medianest/backend", "1.0", None),
        (f"ghcr.io/org/app@{DIGEST}", "ghcr.io", "org/app", None, DIGEST),
        (f"localhost:5000/a/b/c:v2@{DIGEST}", "localhost:5000", "a/b/c", "v2", DIGEST),
    ],
)
def test_valid_image_references(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_image_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "backend",
        "127.0.0.1:5000/Upper/case",
        "ghcr.io/org/app@sha256:short",
        "ghcr.io/org/app:bad tag",
        "ghcr.io/a;rm -rf/b",
    ],
)
def test_invalid_image_references_name_the_input(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid image reference"):
        parse_image_reference(text)


@pytest.mark.parametrize(
    "ref",
    ["main; rm -rf /", "feature/$(whoami)", "a`id`", "-x", "x..y", "branch name", "a|b", "x&&y", "tag.lock", "a>b"],
)
def test_git_refs_with_shell_metacharacters_are_rejected(ref: str) -> None:
    with pytest.raises(ConfigError, match="invalid git ref"):
        require_git_ref(ref)


@pytest.mark.parametrize("ref", ["main", "feature/canary-analysis", "v1.2.3", "release_2026.11"])
def test_ordinary_git_refs_pass(ref: str) -> None:
    assert require_git_ref(ref) == ref


def test_tags() -> None:
    assert tag_from_version("1.2.0+build.5") == "1.2.0-build.5"
    with pytest.raises(ConfigError, match="invalid image tag"):
        require_tag("-bad")


def test_sample_app_config_loads() -> None:
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
    with pytest.raises(ConfigError, match=message):
        load_app_config(write_config(tmp_path, body))


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_app_config(tmp_path / "nope.yaml")


def test_unknown_component_is_named() -> None:
    config = load_app_config(SAMPLE_APP / "delivery.yaml")
    with pytest.raises(ConfigError, match=r"unknown component 'worker'.*known: backend, frontend"):
        config.select(["worker"])


def test_quality_needs_must_name_earlier_commands(tmp_path: Path) -> None:
    body = (
        "name: app\nquality:\n  commands:\n    - {name: report, argv: [x], needs: [tests]}\n"
        "    - {name: tests, argv: [y]}\ncomponents:\n  - {name: a, port: 80}\n"
    )
    with pytest.raises(ConfigError, match=r"'report' needs \['tests'\], which are not listed before it"):
        load_app_config(write_config(tmp_path, body))
