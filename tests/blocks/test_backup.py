"""The backup key's Secret block: created once, never silently replaced (under Prefect's test harness)."""

from __future__ import annotations

import dataclasses
import stat
import uuid
from pathlib import Path

import pytest
from prefect.blocks.system import Secret

from blocks.backup import ensure_backup_key, load_backup_key
from medianest_delivery.errors import ConfigError, MissingBackupKeyError
from medianest_delivery.settings import StackSettings


def settings_in(tmp_path: Path) -> StackSettings:
    return dataclasses.replace(StackSettings(), state_dir=tmp_path)


def test_missing_key_names_the_block_and_the_command(prefect_harness: None) -> None:
    """Loading a key that was never created says which block and how to create it."""
    name = f"key-{uuid.uuid4().hex[:8]}"
    with pytest.raises(MissingBackupKeyError, match=f"{name}.*backup init-key"):
        load_backup_key(name)


def test_ensure_creates_the_secret_and_a_private_escrow_once(prefect_harness: None, tmp_path: Path) -> None:
    """First call makes the key, the Secret and a 0600 escrow file; the second returns the same key."""
    name = f"key-{uuid.uuid4().hex[:8]}"
    settings = settings_in(tmp_path)
    first = ensure_backup_key(settings, name)
    assert load_backup_key(name).key_id == first.key_id
    assert stat.S_IMODE(settings.backup_key_file.stat().st_mode) == 0o600
    assert ensure_backup_key(settings, name).key_id == first.key_id


def test_a_lost_secret_is_recreated_from_the_escrow(prefect_harness: None, tmp_path: Path) -> None:
    """A fresh Prefect database loses the Secret; the escrow file brings back the same key, not a new one."""
    settings = settings_in(tmp_path)
    original = ensure_backup_key(settings, f"key-{uuid.uuid4().hex[:8]}")
    recreated = ensure_backup_key(settings, f"key-{uuid.uuid4().hex[:8]}")
    assert recreated.key_id == original.key_id


def test_an_unparsable_secret_is_an_error_and_is_kept(prefect_harness: None, tmp_path: Path) -> None:
    """A Secret that exists but holds no valid key is an error: replacing it would orphan every backup."""
    name = f"key-{uuid.uuid4().hex[:8]}"
    Secret(value="not a key").save(name)
    with pytest.raises(ConfigError):
        ensure_backup_key(settings_in(tmp_path), name)
    assert Secret.load(name).get() == "not a key"
    assert not settings_in(tmp_path).backup_key_file.exists()
