"""The stack's daemons: started in their own session with a pid file, a log file and an origin record.

Each answers ``probe()`` (is something serving where we expect?); ``start`` starts only what does not
answer (or restarts what we started from another checkout), ``stop`` stops only what we started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from medianest_delivery.errors import StackError
from medianest_delivery.localstack.component import ComponentStatus
from medianest_delivery.localstack.credentials import ensure_credentials, htpasswd_line, htpasswd_matches
from medianest_delivery.proc import process_runs, which_or_raise
from medianest_delivery.settings import PROJECT_ROOT, StackSettings

ALERT_RULES = PROJECT_ROOT / "deployments" / "prometheus" / "alerts.yml"


def project_origin() -> dict[str, str]:
    """Which checkout, interpreter and version of this project is acting now."""
    from importlib.metadata import version

    return {"checkout": str(PROJECT_ROOT), "python": sys.executable, "version": version("medianest-delivery")}


def describe_origin(origin: dict[str, str]) -> str:
    return f"checkout {origin.get('checkout', '?')} (version {origin.get('version', '?')})"


def _pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap our own exited child: no zombie
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _ManagedProcess:
    """A daemon we may start in its own session, with a pid file and a log file.

    Beside the pid file, `<name>.origin.json` records which checkout and version
    started it. Components that run this project's interpreter or read its files
    (`runs_from_checkout`) are stale when that origin is not ours: a removed checkout
    breaks them at their next lazy import, so `up` restarts the ones it owns.
    """

    name = "process"
    runs_from_checkout = False

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.run_dir = settings.state_dir / "run"
        self.log_dir = settings.state_dir / "logs"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def argv_file(self) -> Path:
        return self.run_dir / f"{self.name}.argv.json"

    def our_pid(self) -> int | None:
        """The pid we started, if that process still runs (not another that reused the number)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            started_argv = json.loads(self.argv_file.read_text())
        except FileNotFoundError:  # started by a version that kept no argv record: trust the live pid as it did
            return pid if _pid_alive(pid) else None
        except ValueError:
            return None
        return pid if _pid_alive(pid) and process_runs(pid, started_argv) else None

    def probe(self) -> bool:
        raise NotImplementedError

    def where(self) -> str:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {}

    def startup_timeout(self) -> float:
        return 60.0

    @property
    def origin_file(self) -> Path:
        return self.run_dir / f"{self.name}.origin.json"

    def stale_reason(self) -> str:
        """Why the process we started is not this checkout's ('' when it is, or does not matter)."""
        if not self.runs_from_checkout or self.our_pid() is None:
            return ""
        try:
            recorded = json.loads(self.origin_file.read_text())
        except (FileNotFoundError, ValueError):
            recorded = {}
        current = project_origin()
        if recorded == current:
            return ""
        return f"started from {describe_origin(recorded)}, not {describe_origin(current)}"

    def status(self) -> ComponentStatus:
        running = self.probe()
        pid = self.our_pid()
        detail = f"pid {pid}" if pid else ("external" if running else "")
        stale = self.stale_reason() if running else ""
        return ComponentStatus(self.name, running, self.where(), pid is not None, detail, stale)

    def start(self) -> None:
        if self.probe():
            if not self.stale_reason():
                return
            self.stop()  # ours, but from another checkout or version: restart from this one
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.name}.log"
        argv = self.argv()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env()},
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self.argv_file.write_text(json.dumps(argv))
        self.origin_file.write_text(json.dumps(project_origin()))
        deadline = time.monotonic() + self.startup_timeout()
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                raise StackError(f"{self.name} exited with {proc.returncode}; see {log_path}:\n" + "\n".join(tail))
            if self.probe():
                return
            time.sleep(0.5)
        raise StackError(
            f"{self.name} did not answer at {self.where()} within {self.startup_timeout():.0f}s; see {log_path}"
        )

    def stop(self) -> bool:
        pid = self.our_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _pid_alive(pid):
            time.sleep(0.2)
        if _pid_alive(pid):
            os.killpg(pid, signal.SIGKILL)
        for record in (self.pid_file, self.argv_file, self.origin_file):
            record.unlink(missing_ok=True)
        return True


class DockerEngine(_ManagedProcess):
    """dockerd without bridge or iptables: containers use host networking only."""

    name = "docker"

    def where(self) -> str:
        return self.settings.docker_host

    def probe(self) -> bool:
        import docker

        try:
            client = docker.DockerClient(base_url=self.where(), timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    def argv(self) -> list[str]:
        dockerd = which_or_raise("dockerd", "Install Debian's docker.io (make deps).")
        root = self.settings.state_dir / "docker"
        root.mkdir(parents=True, exist_ok=True)
        return [
            dockerd,
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            f"--data-root={root / 'data'}",
            f"--exec-root={root / 'exec'}",
            f"--pidfile={root / 'dockerd.pid'}",
            f"--host=unix://{self.settings.docker_socket}",
        ]


class RegistryServer(_ManagedProcess):
    """Debian's docker-registry (distribution v2) serving on 127.0.0.1, htpasswd auth required.

    Every request needs the stack's credentials (pushes and pulls alike: an image
    can hold what only the release's readers should see); replicas have none.
    """

    name = "registry"
    user = "medianest-ci"

    def where(self) -> str:
        return f"http://{self.settings.registry_host}"

    def probe(self) -> bool:
        """Serving: the API answers, with our credentials (401 without them is what we want)."""
        credentials = self.settings.registry_credentials()
        try:
            return httpx.get(f"{self.where()}/v2/", timeout=2, auth=credentials).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def htpasswd_path(self) -> Path:
        return self.settings.state_dir / "registry" / "htpasswd"

    def stale_reason(self) -> str:
        """A registry we started before authentication existed still answers anonymously, and one started
        before its htpasswd was rewritten checks the old entries: restart it."""
        if self.our_pid() is None:
            return ""
        try:
            if self.htpasswd_path.stat().st_mtime > self.pid_file.stat().st_mtime:
                return "its htpasswd changed since it started"
        except FileNotFoundError:
            pass
        try:
            anonymous = httpx.get(f"{self.where()}/v2/", timeout=2).status_code
        except httpx.HTTPError:
            return ""
        return "answers without credentials" if anonymous == 200 else ""

    def start(self) -> None:
        self._write_htpasswd()
        super().start()

    def _write_htpasswd(self) -> Path:
        user, password = ensure_credentials(self.settings.registry_credentials_file, self.user).split(":", 1)
        path = self.htpasswd_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and htpasswd_matches(path.read_text(), user, password)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(htpasswd_line(user, password))
        return path

    def config_path(self) -> Path:
        path = self.settings.state_dir / "registry" / "config.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.settings.state_dir / 'registry' / 'data'}\n"
            "  delete:\n    enabled: true\n"
            "auth:\n"
            "  htpasswd:\n"
            "    realm: medianest-registry\n"
            f"    path: {self._write_htpasswd()}\n"
            "http:\n"
            f"  addr: {self.settings.registry_host}\n"
        )
        return path

    def argv(self) -> list[str]:
        binary = which_or_raise("docker-registry", "Install Debian's docker-registry (make deps).")
        return [binary, "serve", str(self.config_path())]


class PrefectServer(_ManagedProcess):
    """`prefect server start` on 127.0.0.1, on PostgreSQL as in production (concurrent
    workers and flows write at once; SQLite serialises them), SQLite on request."""

    name = "prefect-server"
    runs_from_checkout = True  # our venv's prefect

    def start(self) -> None:
        url = self.settings.prefect_database_url
        if url and not self.probe():
            from medianest_delivery.rollout.migrations import create_database

            create_database(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        super().start()

    def where(self) -> str:
        return f"http://127.0.0.1:{self.settings.prefect_port}"

    def probe(self) -> bool:
        try:
            return httpx.get(f"{self.where()}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stale_reason(self) -> str:
        """Ours from another checkout, or started before the API required credentials: restart it."""
        reason = super().stale_reason()
        if reason or self.our_pid() is None:
            return reason
        try:
            anonymous = httpx.post(f"{self.where()}/api/flows/count", json={}, timeout=5).status_code
        except httpx.HTTPError:
            return ""
        return "its API answers without credentials" if anonymous == 200 else ""

    def startup_timeout(self) -> float:
        return 120.0

    def env(self) -> dict[str, str]:
        home = self.settings.state_dir / "prefect"
        home.mkdir(parents=True, exist_ok=True)
        return {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.settings.prefect_port),
            "PREFECT_UI_API_URL": f"{self.where()}/api",
            # Basic auth on the whole API but /health: replicas on the same loopback cannot read Secret blocks.
            "PREFECT_SERVER_API_AUTH_STRING": self.auth_string(),
            "PREFECT_API_AUTH_STRING": self.auth_string(),  # the server's own clients (automation actions)
            **(
                {"PREFECT_API_DATABASE_CONNECTION_URL": self.settings.prefect_database_url}
                if self.settings.prefect_database_url
                else {}
            ),
        }

    def auth_string(self) -> str:
        return ensure_credentials(self.settings.prefect_auth_file, "medianest")

    def argv(self) -> list[str]:
        prefect = Path(sys.executable).parent / "prefect"
        return [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.settings.prefect_port)]


class Pushgateway(_ManagedProcess):
    """Debian's prometheus-pushgateway: where batch flows (dora-report) push their metrics."""

    name = "pushgateway"

    def where(self) -> str:
        return self.settings.pushgateway_url

    def probe(self) -> bool:
        try:
            return httpx.get(f"{self.where()}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def argv(self) -> list[str]:
        binary = which_or_raise("prometheus-pushgateway", "Install Debian's prometheus-pushgateway (make deps).")
        data = self.settings.state_dir / "pushgateway"
        data.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            f"--web.listen-address=127.0.0.1:{self.settings.pushgateway_port}",
            f"--persistence.file={data / 'metrics'}",
            "--persistence.interval=5s",
        ]


class S3Emulator(_ManagedProcess):
    """moto's server mode: an S3-compatible endpoint on 127.0.0.1 (in memory; an emulator, not AWS)."""

    name = "s3-emulator"
    runs_from_checkout = True  # our venv's moto_server

    def where(self) -> str:
        return self.settings.s3_endpoint

    def probe(self) -> bool:
        try:
            reply = httpx.get(f"{self.where()}/", timeout=2)  # ListBuckets
            return reply.status_code == 200 and b"ListAllMyBucketsResult" in reply.content
        except httpx.HTTPError:
            return False

    def argv(self) -> list[str]:
        moto = Path(sys.executable).parent / "moto_server"
        return [str(moto), "-H", "127.0.0.1", "-p", str(self.settings.s3_port)]


class PrometheusServer(_ManagedProcess):
    """Debian's prometheus, scraping every 1 s the targets the runtime writes (file_sd)."""

    name = "prometheus"
    runs_from_checkout = True  # reads this checkout's alert rules

    def where(self) -> str:
        return self.settings.prometheus_url

    def probe(self) -> bool:
        try:
            return httpx.get(f"{self.where()}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def config_path(self) -> Path:
        root = self.settings.state_dir / "prometheus"
        self.settings.scrape_targets_dir.mkdir(parents=True, exist_ok=True)
        targets = self.settings.scrape_targets_dir
        # 1 s scrapes and evaluations: canary analysis sees a bad release within seconds.
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "rule_files": [str(ALERT_RULES)],
            "scrape_configs": [
                {
                    "job_name": "medianest",
                    "file_sd_configs": [{"files": [str(targets / "app-*.json")], "refresh_interval": "1s"}],
                },
                {
                    # DORA metrics pushed by the dora-report flow; keep their app/environment labels.
                    "job_name": "pushgateway",
                    "honor_labels": True,
                    "scrape_interval": "15s",
                    "static_configs": [{"targets": [f"127.0.0.1:{self.settings.pushgateway_port}"]}],
                },
                {
                    "job_name": "haproxy",
                    "file_sd_configs": [{"files": [str(targets / "router-*.json")], "refresh_interval": "1s"}],
                },
            ],
        }
        path = root / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    def argv(self) -> list[str]:
        binary = which_or_raise("prometheus", "Install Debian's prometheus (make deps).")
        return [
            binary,
            f"--config.file={self.config_path()}",
            f"--storage.tsdb.path={self.settings.state_dir / 'prometheus' / 'data'}",
            "--storage.tsdb.retention.time=3d",
            f"--web.listen-address=127.0.0.1:{self.settings.prometheus_port}",
            "--web.enable-lifecycle",
        ]
