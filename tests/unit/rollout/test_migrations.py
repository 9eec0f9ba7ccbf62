"""Migration discovery: order, pending set, and the backward-incompatible marker."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.migrations import INCOMPATIBLE_MARKER, discover_migrations, pending
from tests.helpers import SAMPLE_APP


def test_sample_app_migrations_are_ordered_and_compatible() -> None:
    """The sample app's migrations are found in version order and none carries the incompatible marker."""
    migrations = discover_migrations(SAMPLE_APP / "migrations")
    assert [m.version for m in migrations] == ["0001_create_media", "0002_media_title_index"]
    assert all(m.backward_compatible for m in migrations)


def test_marker_makes_a_migration_irreversible(tmp_path: Path) -> None:
    """The marker makes a migration backward-incompatible; applied versions are left out of the pending set."""
    (tmp_path / "0002_drop.sql").write_text(f"{INCOMPATIBLE_MARKER}\nALTER TABLE media DROP COLUMN kind;\n")
    (tmp_path / "0001_add.sql").write_text("ALTER TABLE media ADD COLUMN rating INT;\n")
    migrations = discover_migrations(tmp_path)
    assert [(m.version, m.backward_compatible) for m in migrations] == [("0001_add", True), ("0002_drop", False)]
    assert [m.version for m in pending(migrations, {"0001_add"})] == ["0002_drop"]


def test_missing_directory_is_named(tmp_path: Path) -> None:
    """A migrations directory that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=r"migrations directory .* does not exist"):
        discover_migrations(tmp_path / "nope")
