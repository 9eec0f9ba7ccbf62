"""The system PostgreSQL server (Debian's cluster on 127.0.0.1:5432): passwords required over TCP.

It holds the Prefect server's database, the release history and every
environment's app database. App replicas use the host network, so anything
that trusts 127.0.0.1 trusts them too: `stack up` makes every loopback TCP
connection authenticate (SCRAM), gives the `postgres` role a generated password
kept only in ``~/.pgpass`` (0600; libpq, psycopg and asyncpg read it, so our
connection strings carry no password), and leaves local socket connections as
the machine had them. Replicas get their own roles (`rollout.app_role`).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import psycopg

from medianest_delivery.errors import StackError
from medianest_delivery.localstack.component import ComponentStatus
from medianest_delivery.settings import StackSettings

SCRAM = "scram-sha-256"
_TCP_TRUST = re.compile(r"^(?P<head>\s*host(?:ssl|nossl)?\s+\S+\s+\S+\s+\S+(?:\s+\d+\.\d+\.\d+\.\d+)?\s+)trust\b")


def require_passwords_over_tcp(hba: str) -> str:
    """pg_hba.conf with every TCP ``trust`` rule turned into SCRAM; comments and socket rules untouched.

    >>> print(require_passwords_over_tcp("local all all trust\\nhost all all 127.0.0.1/32 trust\\n"), end="")
    local all all trust
    host all all 127.0.0.1/32 scram-sha-256
    """
    return "".join(_TCP_TRUST.sub(rf"\g<head>{SCRAM}", line) for line in hba.splitlines(keepends=True))


def pgpass_path() -> Path:
    return Path(os.environ.get("PGPASSFILE") or Path.home() / ".pgpass")


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


def pgpass_password(text: str, host: str, port: int, user: str) -> str | None:
    """The password ~/.pgpass gives ``user`` at ``host:port`` (the first matching line, as libpq reads it).

    >>> pgpass_password("# x\\n127.0.0.1:5432:*:postgres:s3cr\\\\:et\\n", "127.0.0.1", 5432, "postgres")
    's3cr:et'
    """
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = re.split(r"(?<!\\):", line, maxsplit=4)
        if len(fields) != 5:
            continue
        wanted = [host, str(port), "*", user]
        if all(f in ("*", w) for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4].replace("\\:", ":").replace("\\\\", "\\")
    return None


class SystemPostgres:
    name = "system-postgres"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        info = psycopg.conninfo.conninfo_to_dict(settings.history_dsn)
        self.host = str(info.get("host") or "127.0.0.1")
        self.port = int(info.get("port") or 5432)
        self.user = str(info.get("user") or "postgres")

    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _tcp_login(self) -> str:
        """'' when our role logs in over TCP (password from ~/.pgpass), else why not."""
        try:
            with psycopg.connect(
                host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=3
            ) as conn:
                conn.execute("SELECT 1")
            return ""
        except psycopg.Error as exc:
            return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def _trusts_tcp(self) -> bool:
        rules = self._as_superuser(
            "SELECT count(*) FROM pg_hba_file_rules WHERE type LIKE 'host%' AND auth_method = 'trust'"
        )
        return rules.strip() != "0"

    def status(self) -> ComponentStatus:
        problem = self._tcp_login()
        if problem:
            return ComponentStatus(self.name, False, self.where(), False, problem)
        try:
            trusting = self._trusts_tcp()
        except StackError as exc:
            return ComponentStatus(self.name, True, self.where(), False, str(exc))
        if trusting:
            return ComponentStatus(self.name, True, self.where(), False, "trusts TCP connections", "passwords off")
        return ComponentStatus(self.name, True, self.where(), False, f"{SCRAM} over TCP, password in {pgpass_path()}")

    def start(self) -> None:
        """Require passwords over TCP; idempotent. The server itself is the machine's (started if stopped)."""
        self._start_cluster_if_stopped()
        password = self._admin_password()
        self._as_superuser(f"ALTER ROLE {self.user} PASSWORD {_literal(password)}")
        hba_file = Path(self._as_superuser("SHOW hba_file").strip())
        current = hba_file.read_text()
        wanted = require_passwords_over_tcp(current)
        if wanted != current:
            original = hba_file.with_name(hba_file.name + ".before-medianest")
            if not original.exists():
                shutil.copy2(hba_file, original)
            tmp = hba_file.with_name(hba_file.name + ".medianest-tmp")
            tmp.write_text(wanted)
            shutil.copystat(hba_file, tmp)
            shutil.chown(tmp, *_owner(hba_file))
            tmp.replace(hba_file)
        errors = self._as_superuser("SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL").strip()
        if errors != "0":
            raise StackError(f"{hba_file} has {errors} rules PostgreSQL cannot read; not reloading")
        self._as_superuser("SELECT pg_reload_conf()")
        # Every role may connect to every database unless told otherwise: app roles share this server.
        # The `postgres` maintenance database stays open (it holds nothing; tools connect there first).
        self._as_superuser(
            "DO $$ DECLARE db text; BEGIN FOR db IN SELECT datname FROM pg_database"
            " WHERE NOT datistemplate AND datname <> 'postgres' LOOP"
            " EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', db); END LOOP; END $$"
        )
        self._as_superuser("GRANT CONNECT, TEMPORARY ON DATABASE postgres TO PUBLIC")
        problem = self._tcp_login()
        if problem:
            raise StackError(f"PostgreSQL at {self.where()} refuses our role over TCP after the switch: {problem}")

    def stop(self) -> bool:
        return False  # the machine's server: `down` leaves it running

    def _start_cluster_if_stopped(self) -> None:
        if self._tcp_login() == "" or shutil.which("pg_ctlcluster") is None:
            return
        for version in sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []:
            subprocess.run(
                ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                capture_output=True,
                check=False,
                timeout=60,
            )

    def _admin_password(self) -> str:
        """The password ~/.pgpass holds for our role, written there (0600 from the first byte) if missing."""
        path = pgpass_path()
        existing = path.read_text() if path.exists() else ""
        found = pgpass_password(existing, self.host, self.port, self.user)
        if found:
            return found
        password = secrets.token_urlsafe(24)
        lines = [f"{_escape(h)}:{self.port}:*:{_escape(self.user)}:{password}\n" for h in (self.host, "localhost")]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as out:
            if existing and not existing.endswith("\n"):
                out.write("\n")
            out.writelines(lines)
        os.chmod(path, 0o600)  # libpq ignores a group- or world-readable file
        return password

    def _as_superuser(self, statement: str) -> str:
        """Run one statement as the `postgres` OS user over the local socket (peer or trust), SQL on stdin."""
        runuser = shutil.which("runuser")
        psql = shutil.which("psql")
        if runuser is None or psql is None:
            raise StackError("runuser and psql are needed to configure the system PostgreSQL (make deps)")
        result = subprocess.run(
            [runuser, "-u", "postgres", "--", psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-p", str(self.port)],
            input=statement + ";\n",
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if result.returncode != 0:
            # The statement may hold a password: name the failure, never echo the input.
            raise StackError(f"psql as postgres failed ({result.returncode}): {result.stderr.strip()[:300]}")
        return result.stdout


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _owner(path: Path) -> tuple[str, str]:
    return path.owner(), path.group()
