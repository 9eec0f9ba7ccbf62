"""Each environment's app gets its own database roles: its database only, rows only, with a password.

Replicas never see our superuser connection string. Each slot has its own
role (``<database>_app_a``, ``..._b``): deploying into one slot sets only that
role's password, so the other slot's running replicas keep connecting while
the candidate starts, and credentials can rotate with every release. A role may connect to
its environment's database alone (CONNECT is revoked from PUBLIC on every
database we create), read and write the app's tables, and nothing else: no
DDL, no other database, not the migrations' ledger, no superuser, no role or
database creation. Migrations keep running as our own role.
"""

from __future__ import annotations

from urllib.parse import quote

import psycopg
from psycopg import sql

from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.migrations import MIGRATIONS_TABLE, create_database, drop_database
from medianest_delivery.rollout.topology import SLOTS

MAX_IDENTIFIER = 63  # PostgreSQL truncates longer names silently: refuse instead


def app_role_name(admin_dsn: str, slot: str) -> str:
    """``<database>_app_<slot>`` for the database the DSN names.

    >>> app_role_name("postgresql://postgres@127.0.0.1:5432/medianest_production", "a")
    'medianest_production_app_a'
    """
    database = str(psycopg.conninfo.conninfo_to_dict(admin_dsn).get("dbname") or "")
    if not database:
        raise ConfigError("the environment's database URL names no database")
    if slot not in SLOTS:
        raise ConfigError(f"unknown slot {slot!r}; slots are {SLOTS}")
    role = f"{database}_app_{slot}"
    if len(role) > MAX_IDENTIFIER:
        raise ConfigError(f"app role {role!r} is longer than PostgreSQL's {MAX_IDENTIFIER} characters")
    return role


def ensure_app_role(admin_dsn: str, slot: str, password: str) -> str:
    """Create or update the slot's app role with ``password`` and exactly its privileges; returns its name."""
    if len(password) < 16:
        raise ConfigError("an app database password must be at least 16 characters")
    role = app_role_name(admin_dsn, slot)
    database = str(psycopg.conninfo.conninfo_to_dict(admin_dsn)["dbname"])
    create_database(admin_dsn)
    ident = sql.Identifier(role)
    admin = psycopg.conninfo.make_conninfo(admin_dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
        conn.execute(
            sql.SQL(
                "{} {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 100"
                " PASSWORD {}"
            ).format(verb, ident, sql.Literal(password))
        )
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=3) as conn:
        owner = conn.execute("SELECT current_user").fetchone()
        migrator = sql.Identifier(str(owner[0] if owner else "postgres"))
        for statement in (
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA public TO {role}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA public"
            " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
            "ALTER DEFAULT PRIVILEGES FOR ROLE {migrator} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
        ):
            conn.execute(sql.SQL(statement).format(role=ident, migrator=migrator))
        ledger = conn.execute("SELECT to_regclass(%s)", (f"public.{MIGRATIONS_TABLE}",)).fetchone()
        if ledger and ledger[0] is not None:
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(sql.Identifier(MIGRATIONS_TABLE), ident))
    return role


def app_database_url(admin_dsn: str, slot: str, password: str) -> str:
    """The URL a slot's replicas get: its app role and password, same server and database as ``admin_dsn``.

    The server's connection options (``sslmode``, ``sslrootcert``, ...) are kept: a replica must reach the
    database as securely as we do.

    >>> app_database_url("postgresql://postgres@127.0.0.1:5432/medianest_staging", "b", "p@ss word-0123456789")
    'postgresql://medianest_staging_app_b:p%40ss%20word-0123456789@127.0.0.1:5432/medianest_staging'
    >>> app_database_url("postgresql://ops@db.example:5432/m_production?sslmode=verify-full", "a", "pw")
    'postgresql://m_production_app_a:pw@db.example:5432/m_production?sslmode=verify-full'
    """
    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    host, port, database = info.pop("host", None) or "127.0.0.1", info.pop("port", None) or "5432", info.pop("dbname")
    for ours in ("user", "password", "passfile"):
        info.pop(ours, None)
    role = app_role_name(admin_dsn, slot)
    options = "&".join(f"{quote(str(k), safe='')}={quote(str(v), safe='')}" for k, v in sorted(info.items()))
    return (
        f"postgresql://{quote(role, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(str(database), safe='')}"
        + (f"?{options}" if options else "")
    )


def drop_environment_database(admin_dsn: str) -> None:
    """Drop the environment's database, then its app roles (nothing else may depend on them)."""
    drop_database(admin_dsn)
    admin = psycopg.conninfo.make_conninfo(admin_dsn, dbname="postgres")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        for slot in SLOTS:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(app_role_name(admin_dsn, slot))))
