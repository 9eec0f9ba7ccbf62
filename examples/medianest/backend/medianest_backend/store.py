"""Media catalogue persistence in PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any, Protocol

VALID_KINDS = ("movie", "series", "music", "photo")


class MediaStore(Protocol):
    def ping(self) -> None: ...

    def list_media(self, limit: int) -> list[dict[str, Any]]: ...

    def get_media(self, media_id: int) -> dict[str, Any] | None: ...

    def add_media(self, title: str, kind: str) -> dict[str, Any]: ...


class PostgresMediaStore:
    """One short connection per call: simple and safe under a threaded server."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def _connect(self):  # type: ignore[no-untyped-def]
        import psycopg
        from psycopg.rows import dict_row

        return psycopg.connect(self.dsn, connect_timeout=3, row_factory=dict_row)

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1 FROM media LIMIT 1")

    def list_media(self, limit: int) -> list[dict[str, Any]]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id, title, kind FROM media ORDER BY id LIMIT %s", (limit,)
            ).fetchall()
        return [dict(r) for r in rows]

    def get_media(self, media_id: int) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT id, title, kind FROM media WHERE id = %s", (media_id,)
            ).fetchone()
        return dict(row) if row else None

    def add_media(self, title: str, kind: str) -> dict[str, Any]:
        with self._connect() as conn:
            row = conn.execute(
                "INSERT INTO media (title, kind) VALUES (%s, %s) RETURNING id, title, kind",
                (title, kind),
            ).fetchone()
        assert row is not None
        return dict(row)
