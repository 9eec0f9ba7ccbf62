"""What the WAL archiver's own environment is made of."""

from __future__ import annotations

import importlib.metadata

import pytest

from medianest_delivery.backup.archiver_install import (
    ARCHIVER_REQUIREMENTS,
    pinned_requirements,
    source_fingerprint,
)
from medianest_delivery.errors import ConfigError


def test_pins_cover_the_archivers_imports_and_their_dependencies_at_installed_versions() -> None:
    """Every direct requirement and its transitive closure, pinned to exactly what this venv runs."""
    pins = dict(p.split("==") for p in pinned_requirements())
    for name in (*ARCHIVER_REQUIREMENTS, "botocore", "cffi", "pycparser"):
        assert pins[name] == importlib.metadata.version(name), name
    assert "prefect" not in pins  # the archiver stays light: no orchestration stack in archive_command


def test_a_missing_requirement_is_named() -> None:
    """A package the archiver needs but the environment lacks is an error naming it, not a silent gap."""
    with pytest.raises(ConfigError, match="no-such-package-here"):
        pinned_requirements(("no-such-package-here",))


def test_fingerprint_follows_the_pins() -> None:
    """Another dependency version makes another install (never an in-place change under a running cluster)."""
    pins = pinned_requirements()
    assert source_fingerprint(pins) == source_fingerprint(list(pins))
    assert source_fingerprint(pins) != source_fingerprint([*pins[:-1], "zstandard==0.0.1"])
