"""What the WAL archiver's own environment is made of, and how a cluster's settings are read back."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from medianest_delivery.backup.archiver_install import (
    ARCHIVER_REQUIREMENTS,
    pinned_requirements,
    source_fingerprint,
)
from medianest_delivery.backup.pgcluster import LocalCluster, conf_quote, conf_unquote
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


@pytest.mark.parametrize(
    "value",
    ["/opt/tools/walarchive/bin/medianest-walarchive push --config /x/archiver.json %p", "it's", "back\\slash", ""],
)
def test_conf_unquote_inverts_conf_quote(value: str) -> None:
    """What we wrote into postgresql.auto.conf reads back as the same string."""
    assert conf_unquote(conf_quote(value)) == value


def test_auto_setting_last_line_wins(tmp_path: Path) -> None:
    """As in PostgreSQL, a later line of postgresql.auto.conf overrides an earlier one; unset is None."""
    cluster = LocalCluster(tmp_path / "data", 5999)
    cluster.data_dir.mkdir()
    (cluster.data_dir / "postgresql.auto.conf").write_text(
        "# Do not edit\nport = 5999\narchive_command = 'old %p'\narchive_command = 'new %p'\n"
    )
    assert cluster.auto_setting("archive_command") == "new %p"
    assert cluster.auto_setting("port") == "5999"
    assert cluster.auto_setting("restore_command") is None
