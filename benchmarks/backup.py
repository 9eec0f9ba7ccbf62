"""Benchmark: the backup flows against plain PostgreSQL tools, on a ~1 GB database.

    .venv/bin/python benchmarks/backup.py [--scale 67]

One run, on the local stack (Prefect server) and a scratch PostgreSQL cluster
with WAL archiving through our archiver (removed at the end):
1. pgbench -i --scale N (67 ≈ 1 GB) plus the MediaNest schema (its sanity checks
   run in validation) into the archived cluster; archiving catches up.
2. baseline: `pg_dump -Fc <db> | zstd -q -o file` (two processes, a pipe), and
3. the nightly-backup flow (snapshot facts, zstd, AES-256-GCM, SHA-256, manifest,
   directory repository; no replica, config or secrets) on the same database,
   alternating, twice each, after VACUUM FREEZE and with the archiver idle.
   Prints the best of each, their throughputs and the ratio (target: flow >= 0.9x
   baseline), and the dump stage alone (the flow minus Prefect's fixed cost).
4. validate-backup: checksums, restore into a scratch database, compare, checks (time).
5. base-backup, 2,000 pgbench transactions, then pitr-restore to the end of the
   archive into another scratch cluster (time to a promoted, queryable cluster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(label: str, fn: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    print(f"  {label}: {seconds:.1f} s", flush=True)
    return seconds, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--scale", type=int, default=67, help="pgbench scale (67 ≈ 1 GB)")
    args = parser.parse_args()

    from medianest_delivery.localstack.stack import export_environment, stack_up
    from medianest_delivery.settings import StackSettings

    settings = StackSettings()
    stack_up(settings, {"prefect-server"})
    os.environ.update(export_environment(settings))
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

    from pydantic import SecretStr

    from blocks.backup import BackupStorage, ensure_backup_key
    from flows.backup import nightly_backup, validate_backup
    from flows.pitr import base_backup, pitr_restore
    from medianest_delivery.backup.pgcluster import LocalCluster, free_port, pg_tool
    from medianest_delivery.backup.physical import (
        archiving_settings,
        switch_wal,
        wait_for_segment,
        write_archiver_config,
    )

    key = ensure_backup_key(settings)
    base = settings.clusters_dir / f"bench-{uuid.uuid4().hex[:6]}"
    stanza = "bench"
    storage = BackupStorage(kind="directory", path=str(base / "repo"))
    storage_name = f"bench-{uuid.uuid4().hex[:6]}"
    storage.save(storage_name)
    cluster = LocalCluster(base / "data", free_port())
    restored: dict[str, object] = {}
    try:
        config = write_archiver_config(base / "archiver", stanza, storage.spec(), key)
        cluster.initdb()
        cluster.configure({**archiving_settings(config), "max_wal_size": "4GB", "shared_buffers": "512MB"})
        cluster.start()
        dsn = cluster.dsn("bench")
        connection = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres"]
        print(f"1. pgbench -i --scale {args.scale} into an archived cluster on port {cluster.port}")
        subprocess.run([pg_tool("createdb"), *connection, "bench"], check=True)
        timed(
            "load",
            lambda: subprocess.run(
                [
                    pg_tool("pgbench"),
                    "-i",
                    "-q",
                    "--scale",
                    str(args.scale),
                    *connection,
                    "bench",
                ],
                check=True,
                capture_output=True,
            ),
        )
        from medianest_delivery.rollout.migrations import apply_migrations, discover_migrations

        apply_migrations(dsn, discover_migrations(ROOT / "examples" / "medianest" / "migrations"))
        repo = storage.get_client()
        timed("archiving caught up", lambda: wait_for_segment(repo, stanza, switch_wal(cluster.dsn()), timeout=1800))
        size = int(
            subprocess.run(
                [
                    pg_tool("psql"),
                    *connection,
                    "-Atc",
                    "SELECT pg_database_size('bench')",
                    "bench",
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        print(f"   database size {size / 1e9:.2f} GB")

        # Hint bits: the first full read after a bulk load rewrites every page (and, with data
        # checksums, WAL-logs it), which would load the archiver during whichever run came first.
        subprocess.run(
            [
                pg_tool("vacuumdb"),
                "--freeze",
                "--analyze",
                *connection,
                "bench",
            ],
            check=True,
            capture_output=True,
        )

        def quiet() -> None:  # the archiver idle before each timed run
            wait_for_segment(repo, stanza, switch_wal(cluster.dsn()), timeout=1800)

        def baseline() -> int:
            with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
                out = Path(tmp) / "bench.dump.zst"
                dump = subprocess.Popen([pg_tool("pg_dump"), "-Fc", "--dbname", dsn], stdout=subprocess.PIPE)
                subprocess.run(["zstd", "-q", "-o", str(out)], stdin=dump.stdout, check=True)
                assert dump.stdout is not None
                dump.stdout.close()
                if dump.wait() != 0:
                    raise RuntimeError("pg_dump failed")
                return out.stat().st_size

        def backup_flow() -> object:
            return nightly_backup(
                database_url=SecretStr(dsn),
                stanza=stanza,
                storage_block=storage_name,
                replicate=False,
                include_configuration=False,
                include_secrets=False,
            )

        print("2-3. baseline `pg_dump -Fc | zstd > file` and the nightly-backup flow, alternating, twice each")
        baseline_runs, flow_runs = [], []
        for _ in range(2):
            quiet()
            seconds, baseline_bytes = timed("pg_dump -Fc | zstd", baseline)
            baseline_runs.append(seconds)
            quiet()
            seconds, manifest = timed("nightly-backup flow", backup_flow)
            flow_runs.append(seconds)
        baseline_s, flow_s = min(baseline_runs), min(flow_runs)
        dump_s = manifest.duration_s  # type: ignore[attr-defined]

        print("4. validate-backup")
        validate_s, record = timed(
            "validate-backup",
            lambda: validate_backup(
                database_url=SecretStr(dsn),
                stanza=stanza,
                storage_block=storage_name,
                app_config=str(ROOT / "examples" / "medianest" / "delivery.yaml"),
                restore_server=SecretStr(cluster.dsn()),
            ),
        )
        print("5. base-backup, 2,000 transactions, pitr-restore to the end of the archive")
        base_s, _ = timed(
            "base-backup",
            lambda: base_backup(cluster_dsn=SecretStr(cluster.dsn()), stanza=stanza, storage_block=storage_name),
        )
        subprocess.run(
            [
                pg_tool("pgbench"),
                "-n",
                "-t",
                "2000",
                "-c",
                "2",
                *connection,
                "bench",
            ],
            check=True,
            capture_output=True,
        )
        wait_for_segment(repo, stanza, switch_wal(cluster.dsn()))
        pitr_s, restored = timed(
            "pitr-restore",
            lambda: pitr_restore(
                stanza=stanza,
                storage_block=storage_name,
                keep_running=False,
                proof_query="SELECT count(*) > 0 FROM pgbench_history",
                proof_database="bench",
            ),
        )

        mb = size / 1e6
        print("\nresults (one run)")
        print(f"{'':28}{'seconds':>10}{'MB/s':>10}{'stored MB':>12}")
        print(f"{'pg_dump -Fc | zstd':28}{baseline_s:>10.1f}{mb / baseline_s:>10.1f}{baseline_bytes / 1e6:>12.1f}")
        print(f"{'nightly-backup flow':28}{flow_s:>10.1f}{mb / flow_s:>10.1f}{manifest.size / 1e6:>12.1f}")  # type: ignore[attr-defined]
        print(f"{'  of which the dump stage':28}{dump_s:>10.1f}{mb / dump_s:>10.1f}")
        print(f"throughput ratio flow / baseline: {baseline_s / flow_s:.2f}x (target >= 0.90x; best of 2 each)")
        print(f"throughput ratio dump stage / baseline: {baseline_s / dump_s:.2f}x")
        print(
            f"validate-backup (verify + restore + compare): {validate_s:.1f} s, pg_restore {record.restore_seconds:.1f} s"
        )  # type: ignore[attr-defined]
        print(
            f"base-backup: {base_s:.1f} s; pitr-restore to a promoted cluster: {pitr_s:.1f} s (replay {restored['seconds']:.1f} s)"
        )  # type: ignore[index]
    except Exception:
        if os.environ.get("BENCH_KEEP"):
            print("kept", base, cluster.port)
            raise
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)
        raise
    else:
        cluster.remove()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
