"""The embedded local stack: dockerd, an OCI registry, the Prefect server, the base image.

Each component answers ``probe()`` (is something serving where we expect?) and
``start()``; ``up`` starts only what does not answer, and records a pid file for
what it started so that ``down`` stops only that. Everything binds to 127.0.0.1
and keeps its data under ``StackSettings.state_dir``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from medianest_delivery.errors import StackError
from medianest_delivery.proc import run_command, which_or_raise
from medianest_delivery.settings import PROJECT_ROOT, StackSettings

ALERT_RULES = PROJECT_ROOT / "deployments" / "prometheus" / "alerts.yml"
BASE_IMAGE_PACKAGES = ("python3", "python3-psycopg", "python3-prometheus-client")
# Docs and locales are dead weight in container images.
_DPKG_EXCLUDES = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    where: str
    started_by_us: bool
    detail: str = ""
    # Non-empty when what runs was started from another checkout or version of this
    # project (or is otherwise out of date): `up` restarts it if we own it.
    stale: str = ""


def project_origin() -> dict[str, str]:
    """Which checkout, interpreter and version of this project is acting now."""
    from importlib.metadata import version

    return {"checkout": str(PROJECT_ROOT), "python": sys.executable, "version": version("medianest-delivery")}


def describe_origin(origin: dict[str, str]) -> str:
    return f"checkout {origin.get('checkout', '?')} (version {origin.get('version', '?')})"


class StackComponent(Protocol):
    name: str

    def status(self) -> ComponentStatus: ...

    def start(self) -> None: ...

    def stop(self) -> bool: ...


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

    def our_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

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
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                self.argv(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env()},
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
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
        self.pid_file.unlink(missing_ok=True)
        self.origin_file.unlink(missing_ok=True)
        return True


class DockerEngine(_ManagedProcess):
    """dockerd without bridge or iptables: containers use host networking only."""

    name = "docker"

    def where(self) -> str:
        return self.settings.docker_host

    def probe(self) -> bool:
        import docker

        try:
            client = docker.DockerClient(base_url=self.settings.docker_host, timeout=3)
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
    """Debian's docker-registry (distribution v2) serving on 127.0.0.1."""

    name = "registry"

    def where(self) -> str:
        return f"http://{self.settings.registry_host}"

    def probe(self) -> bool:
        try:
            return httpx.get(f"{self.where()}/v2/", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def config_path(self) -> Path:
        path = self.settings.state_dir / "registry" / "config.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self.settings.state_dir / 'registry' / 'data'}\n"
            "  delete:\n    enabled: true\n"
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
            **(
                {"PREFECT_API_DATABASE_CONNECTION_URL": self.settings.prefect_database_url}
                if self.settings.prefect_database_url
                else {}
            ),
        }

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


class BaseImage:
    """The sample app's base image: mmdebstrap from the apt mirror, then docker import."""

    name = "base-image"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    def _client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.settings.docker_host, timeout=600)

    def status(self) -> ComponentStatus:
        import docker

        try:
            client = self._client()
            image = client.images.get(self.settings.base_image)
            return ComponentStatus(self.name, True, self.settings.base_image, False, image.short_id)
        except docker.errors.ImageNotFound:
            return ComponentStatus(self.name, False, self.settings.base_image, False, "missing")
        except Exception as exc:  # noqa: BLE001 - docker down
            return ComponentStatus(self.name, False, self.settings.base_image, False, f"docker unreachable: {exc}")

    def start(self) -> None:
        if self.status().running:
            return
        mmdebstrap = which_or_raise("mmdebstrap", "Install Debian's mmdebstrap (make deps).")
        out_dir = self.settings.state_dir / "base-image"
        out_dir.mkdir(parents=True, exist_ok=True)
        tarball = out_dir / "base.partial.tar"  # mmdebstrap picks the format from the name
        tarball.unlink(missing_ok=True)  # left by a killed run
        argv = [
            mmdebstrap,
            "--variant=apt",
            "--include=" + ",".join(BASE_IMAGE_PACKAGES),
            *[f"--dpkgopt=path-exclude={p}" for p in _DPKG_EXCLUDES],
            "bookworm",
            str(tarball),
            self.settings.debian_mirror,
        ]
        run_command(argv, timeout=900)
        repository, _, tag = self.settings.base_image.rpartition(":")
        client = self._client()
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag)
        tarball.unlink(missing_ok=True)
        if not self.status().running:
            raise StackError(f"docker import did not produce {self.settings.base_image}")

    def stop(self) -> bool:
        return False  # images are data, not processes: `down` keeps them


class ArchivedCluster:
    """A PostgreSQL cluster with WAL archiving into the default backup repository (stanza
    `medianest-cluster`): the local stand-in for MediaNest's production cluster in base-backup,
    pitr-restore and dr-drill."""

    name = "archived-postgres"
    stanza = "medianest-cluster"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.base = settings.clusters_dir / "archived"

    def cluster(self) -> Any:
        from medianest_delivery.backup.pgcluster import LocalCluster

        return LocalCluster(self.base / "data", self.settings.archived_cluster_port)

    def status(self) -> ComponentStatus:
        cluster = self.cluster()
        where = cluster.dsn()
        if not (cluster.data_dir / "PG_VERSION").exists():
            return ComponentStatus(self.name, False, where, False, "not initialised")
        running = cluster.running()
        return ComponentStatus(
            self.name,
            running,
            where,
            self.marker.exists(),
            f"archiving to {self.settings.backups_dir}",
            self.stale_reason(cluster),
        )

    def stale_reason(self, cluster: Any) -> str:
        """Why the archive_command is not this checkout's installed archiver ('' when it is)."""
        from medianest_delivery.backup.archiver_install import current_fingerprint, installed_fingerprint

        command = cluster.auto_setting("archive_command") or ""
        stable = str(self.settings.tools_dir / "walarchive" / "bin")
        if not command.startswith(stable):
            return f"archive_command is not the installed archiver under {stable}"
        installed, current = installed_fingerprint(self.settings.tools_dir), current_fingerprint()
        if installed != current:
            return f"archiver {installed} installed, this checkout builds {current}"
        return ""

    @property
    def marker(self) -> Path:
        """Present while this state dir's `stack up` owns the running cluster (shared like dockerd)."""
        return self.settings.state_dir / "run" / f"{self.name}.started"

    def start(self) -> None:
        """Create the cluster all-or-nothing, keep its archiver current, start it.

        initdb and configuration happen in `data.partial`, renamed to `data` only
        when complete: a run killed at any step leaves nothing the next `up` trips
        on (a half-made `data` without archiving settings, from older versions,
        is repaired rather than started on PostgreSQL's default port).
        """
        cluster = self.cluster()
        archiving = self._archiving_settings()
        if not (cluster.data_dir / "PG_VERSION").exists():
            self._create(cluster, archiving)
        elif cluster.auto_setting("port") is None:
            cluster.configure(archiving)
        elif cluster.auto_setting("archive_command") != archiving["archive_command"]:
            cluster.configure({"archive_command": archiving["archive_command"]})
            if cluster.running():
                cluster.reload()
        if not cluster.running():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()  # before starting: a run killed right after start still owns it
            cluster.start()

    def _archiving_settings(self) -> dict[str, str | int]:
        """Backup key, archiver config and the installed archiver, proven as the cluster user."""
        from blocks.backup import ensure_backup_key
        from medianest_delivery.backup.physical import archiving_settings, write_archiver_config
        from medianest_delivery.backup.repospec import RepositorySpec

        os.environ.setdefault("PREFECT_API_URL", self.settings.prefect_api_url)
        key = ensure_backup_key(self.settings)
        spec = RepositorySpec(kind="directory", path=str(self.settings.backups_dir))
        config = write_archiver_config(self.base / "archiver", self.stanza, spec, key)
        return archiving_settings(config, tools_dir=self.settings.tools_dir)

    def _create(self, cluster: Any, archiving: dict[str, str | int]) -> None:
        from medianest_delivery.backup.pgcluster import LocalCluster

        partial = LocalCluster(self.base / "data.partial", cluster.port)
        shutil.rmtree(partial.data_dir, ignore_errors=True)  # left by a killed `up`: never started
        partial.initdb()
        partial.configure(archiving)
        os.replace(partial.data_dir, cluster.data_dir)

    def stop(self) -> bool:
        if not self.marker.exists():
            return False
        self.marker.unlink()
        cluster = self.cluster()
        if not cluster.running():
            return False
        cluster.stop()
        return True


class EnvironmentRouters:
    """The HAProxy routers that `deliver` starts per environment: shown by status, stopped by down."""

    name = "routers"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    def _routers(self) -> list[Any]:
        from medianest_delivery.rollout.router import HAProxyRouter

        root = self.settings.routers_dir
        return [HAProxyRouter(root, d.name) for d in sorted(root.glob("*")) if d.is_dir()] if root.is_dir() else []

    def status(self) -> ComponentStatus:
        running = [r.environment for r in self._routers() if r.running()]
        detail = ", ".join(running) if running else "none (deliver starts them)"
        return ComponentStatus(self.name, True, str(self.settings.routers_dir), bool(running), detail)

    def start(self) -> None:
        """Routers belong to environments: `deliver` starts them from their persisted state."""

    def stop(self) -> bool:
        return any([router.stop() for router in self._routers()])


def components(settings: StackSettings) -> list[StackComponent]:
    """In start order: the base image needs dockerd."""
    return [
        DockerEngine(settings),
        RegistryServer(settings),
        PrefectServer(settings),
        PrometheusServer(settings),
        Pushgateway(settings),
        S3Emulator(settings),
        ArchivedCluster(settings),
        BaseImage(settings),
        EnvironmentRouters(settings),
    ]


def stack_up(
    settings: StackSettings,
    only: set[str] | None = None,
    report: Callable[[str, float], None] | None = None,
) -> list[ComponentStatus]:
    """Start every component that does not already answer and restart stale ones we own.

    A second call is a no-op. `report(name, seconds)` hears how long each component took
    (the first run builds the base image and the archiver: minutes, not seconds).
    """
    for component in components(settings):
        if only and component.name not in only:
            continue
        started = time.monotonic()
        component.start()
        if report is not None:
            report(component.name, time.monotonic() - started)
    return stack_status(settings)


def stack_down(settings: StackSettings) -> list[str]:
    """Stop, in reverse order, only the processes this project started."""
    return [c.name for c in reversed(components(settings)) if c.stop()]


def stack_status(settings: StackSettings) -> list[ComponentStatus]:
    return [c.status() for c in components(settings)]


def export_environment(settings: StackSettings) -> dict[str, str]:
    """Variables that point docker clients and Prefect at this stack."""
    return {"DOCKER_HOST": settings.docker_host, "PREFECT_API_URL": settings.prefect_api_url}
