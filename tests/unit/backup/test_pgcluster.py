"""How a cluster's settings are written to and read back from postgresql.auto.conf."""

from __future__ import annotations

from pathlib import Path

import pytest

from medianest_delivery.backup.pgcluster import LocalCluster, conf_quote, conf_unquote


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
