"""The system PostgreSQL's switch to passwords over TCP: pg_hba rewriting and ~/.pgpass handling (pure parts)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from medianest_delivery.localstack.system_postgres import SystemPostgres, pgpass_password, require_passwords_over_tcp
from medianest_delivery.settings import StackSettings

HBA = """# TYPE  DATABASE USER ADDRESS METHOD
local   all      all             trust
host    all      all  127.0.0.1/32 trust
hostssl all      all  ::1/128      trust
host    all      all  127.0.0.1 255.255.255.255 trust
host    replication all 127.0.0.1/32 md5
# host all all 0.0.0.0/0 trust   (a comment stays a comment)
"""


def test_every_tcp_trust_rule_asks_for_a_password_and_nothing_else_changes() -> None:
    rewritten = require_passwords_over_tcp(HBA)
    lines = rewritten.splitlines()
    assert lines[1] == "local   all      all             trust"
    assert lines[2].endswith("127.0.0.1/32 scram-sha-256")
    assert lines[3].endswith("::1/128      scram-sha-256")
    assert lines[4].endswith("255.255.255.255 scram-sha-256")
    assert lines[5].endswith("md5")
    assert lines[6] == "# host all all 0.0.0.0/0 trust   (a comment stays a comment)"
    assert require_passwords_over_tcp(rewritten) == rewritten


def test_pgpass_is_created_private_and_existing_entries_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's own lines survive; our entry is appended once; the file is 0600 (libpq ignores it otherwise)."""
    passfile = tmp_path / "pgpass"
    passfile.write_text("db.example:5432:*:alice:hers")  # no trailing newline
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    component = SystemPostgres(StackSettings())
    first = component._admin_password()
    assert component._admin_password() == first  # read back, not regenerated
    text = passfile.read_text()
    assert text.startswith("db.example:5432:*:alice:hers\n")
    assert pgpass_password(text, "127.0.0.1", 5432, "postgres") == first
    assert pgpass_password(text, "localhost", 5432, "postgres") == first
    assert text.count(first) == 2
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600


def test_a_new_pgpass_is_never_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passfile = tmp_path / "fresh-pgpass"
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    SystemPostgres(StackSettings())._admin_password()
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
