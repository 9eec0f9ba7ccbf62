"""PostgreSQL connection strings without their passwords: for command lines, names, messages and parameters.

A password in a connection string ends up wherever the string goes: `ps` (a
pg_dump argument), task run names, flow run parameters (stored by the Prefect
server, shown in its UI), exception messages and logs. Tools get it through the
environment instead (PGPASSWORD, or the user's PGPASSFILE), and everything that
shows a connection string shows it redacted.
"""

from __future__ import annotations

import os

import psycopg.conninfo
from pydantic import SecretStr

from medianest_delivery.errors import ConfigError

REDACTED = "********"
# libpq connection parameters that are secrets.
SECRET_PARAMETERS = ("password", "sslpassword")


def _parse(dsn: str) -> dict[str, str]:
    try:
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(dsn).items()}
    except psycopg.ProgrammingError as exc:  # the message quotes the string: never pass it on
        raise ConfigError("a PostgreSQL connection string is malformed (not shown: it may hold a password)") from exc


def libpq_target(dsn: str) -> tuple[str, dict[str, str]]:
    """The connection string without its password, and the environment that carries the password to a libpq tool.

    >>> libpq_target("postgresql://app:s3cret@127.0.0.1:5432/media")
    ('user=app dbname=media host=127.0.0.1 port=5432', {'PGPASSWORD': 's3cret'})
    >>> libpq_target("host=127.0.0.1 dbname=media")
    ('dbname=media host=127.0.0.1', {})
    """
    params = _parse(dsn)
    password = params.pop("password", None)
    if "sslpassword" in params:  # libpq has no environment variable for it: only a passfile-less refusal is safe
        raise ConfigError("a connection string holds an sslpassword: give the key unencrypted or via a service file")
    return psycopg.conninfo.make_conninfo(**params), ({"PGPASSWORD": password} if password else {})


def tool_environment(dsn: str) -> tuple[str, dict[str, str]]:
    """For a libpq tool's process: the password-free connection string, and the full environment carrying the
    password (this process's environment plus PGPASSWORD when the string had one)."""
    target, secret = libpq_target(dsn)
    return target, {**os.environ, **secret}


def redact_dsn(dsn: str) -> str:
    """The connection string for people to read: the password replaced, everything else kept.

    >>> redact_dsn("postgresql://app:s3cret@127.0.0.1/media")
    'user=app password=******** dbname=media host=127.0.0.1'
    >>> redact_dsn("not a dsn ' with a quote")
    '<malformed connection string>'
    """
    try:
        params = _parse(dsn)
    except ConfigError:
        return "<malformed connection string>"
    for secret in SECRET_PARAMETERS:
        if secret in params:
            params[secret] = REDACTED
    return psycopg.conninfo.make_conninfo(**params)


def reveal(value: SecretStr | str | None) -> str | None:
    """A connection string from a flow parameter typed ``SecretStr``: Prefect stores such parameters masked
    (``**********``) and its UI shows a password field, so a DSN with a password is never kept in the open.

    >>> reveal(SecretStr("postgresql://app:pw@127.0.0.1/media")), reveal(None)
    ('postgresql://app:pw@127.0.0.1/media', None)
    """
    dsn = value.get_secret_value() if isinstance(value, SecretStr) else value
    if dsn is not None:
        _parse(dsn)  # a malformed string fails here, with a message that does not quote it
    return dsn
