"""Release history in PostgreSQL: every deploy, promotion, rollback and measurement, per environment."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from medianest_delivery.dsn import redact_dsn
from medianest_delivery.errors import HistoryUnavailableError


class ReleaseEventKind(enum.StrEnum):
    """What happened to a release in an environment (the history's `event` column)."""

    APPROVED = "approved"
    DEPLOY_STARTED = "deploy-started"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    FROZEN = "frozen"
    FAILED = "failed"
    RECONCILED = "reconciled"


SCHEMA = """
CREATE TABLE IF NOT EXISTS release_events (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    environment TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    git_sha TEXT NOT NULL,
    commit_time TIMESTAMPTZ,
    event TEXT NOT NULL CHECK (event IN ({EVENT_KINDS})),
    strategy TEXT,
    reason TEXT,
    flow_run_id TEXT,
    manifest JSONB
);
CREATE INDEX IF NOT EXISTS release_events_env_at ON release_events (environment, at);
CREATE TABLE IF NOT EXISTS analysis_measurements (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    environment TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    component TEXT NOT NULL,
    step INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    analysis INTEGER NOT NULL,
    metric TEXT NOT NULL,
    phase TEXT NOT NULL,
    value DOUBLE PRECISION,
    threshold TEXT,
    query TEXT,
    message TEXT,
    flow_run_id TEXT
);
CREATE TABLE IF NOT EXISTS performance_baselines (
    environment TEXT NOT NULL,
    app TEXT NOT NULL,
    version TEXT NOT NULL,
    p95_seconds DOUBLE PRECISION NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (environment, app, version)
);
""".replace("{EVENT_KINDS}", ", ".join(f"'{kind.value}'" for kind in ReleaseEventKind))


@dataclass(frozen=True)
class ReleaseEvent:
    at: dt.datetime
    environment: str
    app: str
    version: str
    git_sha: str
    commit_time: dt.datetime | None
    event: str
    strategy: str | None
    reason: str | None
    flow_run_id: str | None
    manifest: dict[str, Any] | None


def ensure_database(dsn: str) -> None:
    """Create the history database (if the DSN names one that is missing) and its tables."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    name = str(info.get("dbname") or "")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute(SCHEMA)
            return
    except psycopg.OperationalError as exc:
        if f'database "{name}" does not exist' not in str(exc):
            raise HistoryUnavailableError(f"release history at {redact_dsn(dsn)} unreachable: {exc}") from exc
    admin = psycopg.conninfo.make_conninfo(dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)))
        # Only our role (and superusers) may connect: app roles share this server.
        conn.execute(
            psycopg.sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(psycopg.sql.Identifier(name))
        )
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        conn.execute(SCHEMA)


class ReleaseHistory:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _connect(self) -> psycopg.Connection[dict[str, Any]]:
        try:
            return psycopg.connect(self.dsn, connect_timeout=3, row_factory=dict_row)
        except psycopg.OperationalError as exc:
            raise HistoryUnavailableError(f"release history unreachable: {exc}") from exc

    def record(
        self,
        environment: str,
        manifest: dict[str, Any],
        event: str,
        *,
        strategy: str | None = None,
        reason: str | None = None,
        flow_run_id: str | None = None,
    ) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO release_events (environment, app, version, git_sha, commit_time, event, strategy,"
                " reason, flow_run_id, manifest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    environment,
                    manifest["app"],
                    manifest["version"],
                    manifest["git_sha"],
                    manifest.get("git_commit_time"),
                    event,
                    strategy,
                    reason,
                    flow_run_id,
                    json.dumps(manifest),
                ),
            )

    def record_measurements(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = list(rows[0])
        sql = f"INSERT INTO analysis_measurements ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"  # noqa: S608 - fixed column names
        with self._connect() as conn, conn.cursor() as cur:
            cur.executemany(sql, [tuple(r[c] for c in columns) for r in rows])

    def events(self, environment: str | None = None, app: str | None = None) -> list[ReleaseEvent]:
        where, params = [], []
        if environment:
            where.append("environment = %s")
            params.append(environment)
        if app:
            where.append("app = %s")
            params.append(app)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT at, environment, app, version, git_sha, commit_time, event, strategy, reason, flow_run_id,"  # noqa: S608
                f" manifest FROM release_events {clause} ORDER BY at, id",
                params,
            ).fetchall()
        return [ReleaseEvent(**row) for row in rows]

    def release_by_version(self, environment: str, app: str, version: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT manifest FROM release_events WHERE environment = %s AND app = %s AND version = %s"
                " AND event = 'promoted' ORDER BY at DESC, id DESC LIMIT 1",
                (environment, app, version),
            ).fetchone()
        return dict(row["manifest"]) if row else None

    def save_baseline(self, environment: str, app: str, version: str, p95_seconds: float) -> None:
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO performance_baselines (environment, app, version, p95_seconds) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (environment, app, version) DO UPDATE SET p95_seconds = EXCLUDED.p95_seconds, at = now()",
                (environment, app, version, p95_seconds),
            )

    def previous_baseline(self, environment: str, app: str, version: str) -> tuple[str, float] | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT version, p95_seconds FROM performance_baselines WHERE environment = %s AND app = %s"
                " AND version <> %s ORDER BY at DESC LIMIT 1",
                (environment, app, version),
            ).fetchone()
        return (row["version"], float(row["p95_seconds"])) if row else None
