"""The disaster-recovery half of `medianest-delivery demo`: back up, prove, drill."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from medianest_delivery.settings import StackSettings


def _run(flow: Any, **parameters: Any) -> tuple[Any, str]:
    state = flow(**parameters, return_state=True)
    return state.result(), str(state.state_details.flow_run_id)


SAMPLE_ROWS = 50_000
SEED_SAMPLE = """
INSERT INTO media (title, kind)
SELECT 'Sample title ' || g || ' ' || md5(g::text), (ARRAY['movie', 'series', 'music', 'photo'])[1 + g %% 4]
FROM generate_series(1, %s) AS g
"""


def seed_catalogue(app_config: str) -> int:
    """Give the demo's production database something to back up (only when its media table is nearly empty)."""
    import psycopg

    from blocks.runtime import environment_database_server
    from medianest_delivery.appconfig import load_app_config

    dsn = load_app_config(app_config).database_url("production", environment_database_server("production"))
    with psycopg.connect(dsn) as conn:
        exists = conn.execute("SELECT to_regclass('media') IS NOT NULL").fetchone()
        if not exists or not exists[0]:
            return 0
        row = conn.execute("SELECT count(*) FROM media").fetchone()
        if row is None or row[0] >= 1000:
            return 0
        conn.execute(SEED_SAMPLE, (SAMPLE_ROWS,))
    return SAMPLE_ROWS


def run_recovery_demo(console: Console, settings: StackSettings, app_config: str) -> None:
    """Nightly backup of production (with replica), its restore proof, a base backup and a DR drill."""
    from blocks.backup import ensure_backup_key
    from flows.backup import nightly_backup, validate_backup
    from flows.pitr import base_backup, dr_drill
    from medianest_delivery.localstack.archived_cluster import ArchivedCluster

    ensure_backup_key(settings)
    seeded = seed_catalogue(app_config)
    ui = f"http://127.0.0.1:{settings.prefect_port}/runs/flow-run"
    cluster = ArchivedCluster(settings)
    cluster_dsn = cluster.cluster().dsn()
    rows = []
    console.rule("disaster recovery: nightly backup, restore proof, base backup, DR drill")
    if seeded:
        console.print(f"(the demo's production catalogue was empty: added {seeded:,} sample media rows to back up)")
    backup, run = _run(nightly_backup, app_config=app_config, environment="production")
    rows.append(
        (
            "nightly-backup",
            backup.backup_id,
            f"{backup.plain_size / 1e6:.1f} MB → {backup.size / 1e6:.2f} MB, {len(backup.row_counts)} tables, "
            f"copy: {', '.join(backup.copies)}",
            f"{ui}/{run}",
        )
    )
    record, run = _run(validate_backup, app_config=app_config, environment="production")
    rows.append(
        (
            "validate-backup",
            record.verdict.value,
            f"restore {record.restore_seconds:.1f} s, backup age {record.backup_age_seconds:.0f} s, 0 mismatches",
            f"{ui}/{run}",
        )
    )
    # Connection strings go in as SecretStr: Prefect stores such parameters masked.
    base, run = _run(base_backup, cluster_dsn=SecretStr(cluster_dsn), stanza=cluster.stanza)
    rows.append(("base-backup", base.backup_id, f"WAL {base.wal_start_lsn} … {base.wal_end_lsn}", f"{ui}/{run}"))
    drill, run = _run(dr_drill, cluster_dsn=SecretStr(cluster_dsn), stanza=cluster.stanza)
    rows.append(
        (
            "dr-drill",
            "passed" if drill["met"] else "failed",
            f"RTO {drill['rto_seconds']:.1f} s (target 30 min), RPO {drill['rpo_seconds']:.1f} s (target 5 min)",
            f"{ui}/{run}",
        )
    )
    table = Table(title="what the demo did for disaster recovery")
    for column in ("flow", "result", "figures", "flow run"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
