"""Throwaway PostgreSQL clusters on 127.0.0.1: initdb'd sources with WAL archiving, and restore targets.

PostgreSQL refuses to run as root, so when we are root the cluster's
processes (and its archive_command) run as the `postgres` OS user; the data
directory, and any directory repository the archiver writes, belong to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from medianest_delivery.errors import CommandFailedError, StackError, ToolMissingError


def pg_bin_dir() -> Path:
    """The server binaries (initdb, pg_ctl): MEDIANEST_PG_BIN, else the newest Debian install."""
    override = os.environ.get("MEDIANEST_PG_BIN")
    if override:
        return Path(override)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not candidates:
        raise ToolMissingError("PostgreSQL server binaries not found under /usr/lib/postgresql; install postgresql")
    return candidates[-1]


def pg_tool(name: str) -> str:
    path = pg_bin_dir() / name
    if not path.exists():
        raise ToolMissingError(f"{path} is missing; install the PostgreSQL server package")
    return str(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cluster_user() -> str:
    """Who runs PostgreSQL processes: `postgres` when we are root, else ourselves."""
    return "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name


def give_to_cluster_user(path: Path, recursive: bool = True) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(cluster_user())
    os.lchown(path, entry.pw_uid, entry.pw_gid)
    if not recursive:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


def run_as_cluster_user(
    argv: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    user = cluster_user() if os.geteuid() == 0 else None
    completed = subprocess.run(
        argv,
        user=user,
        cwd="/",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and completed.returncode != 0:
        raise CommandFailedError(argv, completed.returncode, completed.stdout)
    return completed


def conf_quote(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def conf_unquote(raw: str) -> str:
    """The value of a postgresql.conf literal (the inverse of `conf_quote`; bare words as they are)."""
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == "'":
        return raw[1:-1].replace("''", "'").replace("\\\\", "\\")
    return raw


class LocalCluster:
    """One data directory and its postmaster on 127.0.0.1:<port>."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = Path(data_dir)
        self.port = port

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def initdb(self) -> None:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        give_to_cluster_user(self.data_dir.parent)
        run_as_cluster_user(
            [
                pg_tool("initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                "postgres",
                "--auth",
                "trust",
                "--data-checksums",
                "--encoding",
                "UTF8",
                "--locale",
                "C.UTF-8",
            ]
        )

    def configure(self, settings: Mapping[str, str | int]) -> None:
        """Append settings to postgresql.auto.conf (later lines win), always pinning us to loopback."""
        lines = {
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.data_dir.parent),
            **settings,
        }
        text = "".join(
            f"{name} = {value if isinstance(value, int) else conf_quote(value)}\n" for name, value in lines.items()
        )
        auto = self.data_dir / "postgresql.auto.conf"
        with auto.open("a") as conf:
            conf.write(text)
        give_to_cluster_user(auto)

    def auto_setting(self, name: str) -> str | None:
        """What postgresql.auto.conf sets `name` to (its last line wins); None when it does not."""
        auto = self.data_dir / "postgresql.auto.conf"
        value: str | None = None
        if auto.exists():
            for line in auto.read_text().splitlines():
                key, sep, raw = line.partition("=")
                if sep and key.strip() == name:
                    value = conf_unquote(raw)
        return value

    def reload(self) -> None:
        """Make a running postmaster re-read its configuration (archive_command is reloadable)."""
        run_as_cluster_user([pg_tool("pg_ctl"), "reload", "-D", str(self.data_dir)])

    def start(self, timeout: float = 300) -> None:
        give_to_cluster_user(self.data_dir.parent, recursive=False)  # socket and lock files go there
        self.log_file.touch()
        give_to_cluster_user(self.log_file)
        completed = run_as_cluster_user(
            [
                pg_tool("pg_ctl"),
                "start",
                "-w",
                "-t",
                str(int(timeout)),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
            ],
            timeout=timeout + 30,
            check=False,
        )
        if completed.returncode != 0:
            tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-20:])
            raise StackError(f"cluster {self.data_dir} did not start on port {self.port}:\n{tail}")

    def running(self) -> bool:
        pid_file = self.data_dir / "postmaster.pid"
        return (
            pid_file.exists()
            and run_as_cluster_user([pg_tool("pg_ctl"), "status", "-D", str(self.data_dir)], check=False).returncode
            == 0
        )

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            run_as_cluster_user([pg_tool("pg_ctl"), "stop", "-w", "-m", mode, "-D", str(self.data_dir)], check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.log_file.unlink()
