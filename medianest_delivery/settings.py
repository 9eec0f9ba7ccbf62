"""Where the local stack lives and listens; every value can be overridden by env."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

# The source checkout this package runs from (its examples, deployments and prefect.yaml).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer port") from exc


def _read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class StackSettings:
    """Locations and ports of the embedded local stack (all on 127.0.0.1)."""

    state_dir: Path = field(
        default_factory=lambda: Path(
            os.environ.get("MEDIANEST_STATE_DIR", str(Path.home() / ".local/state/medianest-delivery"))
        )
    )
    registry_port: int = field(default_factory=lambda: _env_int("MEDIANEST_REGISTRY_PORT", 5000))
    prefect_port: int = field(default_factory=lambda: _env_int("MEDIANEST_PREFECT_PORT", 4200))
    prometheus_port: int = field(default_factory=lambda: _env_int("MEDIANEST_PROMETHEUS_PORT", 9090))
    pushgateway_port: int = field(default_factory=lambda: _env_int("MEDIANEST_PUSHGATEWAY_PORT", 9091))
    s3_port: int = field(default_factory=lambda: _env_int("MEDIANEST_S3_PORT", 9300))
    base_image: str = field(default_factory=lambda: os.environ.get("MEDIANEST_BASE_IMAGE", "medianest/base:bookworm"))
    debian_mirror: str = field(
        default_factory=lambda: os.environ.get("MEDIANEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
    )

    @property
    def docker_socket(self) -> Path:
        return self.state_dir / "docker" / "docker.sock"

    @property
    def docker_host(self) -> str:
        return os.environ.get("DOCKER_HOST") or f"unix://{self.docker_socket}"

    @property
    def swarm_dir(self) -> Path:
        """The local two-node Swarm: one dockerd per node, each with its own socket, data root and exec root."""
        return self.state_dir / "swarm"

    def swarm_node_host(self, node: str) -> str:
        """The engine of a local Swarm node (``manager`` or ``worker``)."""
        return f"unix://{self.swarm_dir / node / 'docker.sock'}"

    @property
    def swarm_manager_host(self) -> str:
        """The Swarm manager staging runs on by default (MEDIANEST_SWARM_HOST, else the local stack's)."""
        return os.environ.get("MEDIANEST_SWARM_HOST") or self.swarm_node_host("manager")

    @property
    def registry_host(self) -> str:
        return f"127.0.0.1:{self.registry_port}"

    @property
    def prefect_api_url(self) -> str:
        return os.environ.get("PREFECT_API_URL") or self.stack_prefect_api_url

    @property
    def stack_prefect_api_url(self) -> str:
        """The local stack's own Prefect server (whatever PREFECT_API_URL says)."""
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def prefect_auth_file(self) -> Path:
        """The stack's Prefect API credentials, `user:password` (0600): the server requires them."""
        return self.state_dir / "secrets" / "prefect-api-auth"

    @property
    def registry_credentials_file(self) -> Path:
        """The stack's registry credentials, `user:password` (0600): the registry requires them."""
        return self.state_dir / "secrets" / "registry-credentials"

    def prefect_auth_string(self) -> str | None:
        """`user:password` for the stack's Prefect server, once `stack up` has made it."""
        return _read_secret(self.prefect_auth_file)

    def registry_credentials(self) -> tuple[str, str] | None:
        """(user, password) for the stack's registry, once `stack up` has made them."""
        value = _read_secret(self.registry_credentials_file)
        if value is None or ":" not in value:
            return None
        user, password = value.split(":", 1)
        return user, password

    @property
    def trivy_cache_dir(self) -> Path:
        return Path(os.environ.get("TRIVY_CACHE_DIR") or self.state_dir / "trivy-cache")

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def scrape_targets_dir(self) -> Path:
        return self.state_dir / "prometheus" / "targets"

    @property
    def routers_dir(self) -> Path:
        return self.state_dir / "routers"

    @property
    def history_dsn(self) -> str:
        return os.environ.get("MEDIANEST_HISTORY_DSN", "postgresql://postgres@127.0.0.1:5432/medianest_delivery")

    @property
    def built_base_images_file(self) -> Path:
        """Image ids of every base image the local stack built, one per line (the release policy's local_stack)."""
        return self.state_dir / "base-image" / "built-ids.txt"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def releases_dir(self) -> Path:
        return self.state_dir / "releases"

    @property
    def sources_dir(self) -> Path:
        """The worker's source cache: repository mirrors and one worktree per commit built."""
        return self.state_dir / "sources"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def backups_dir(self) -> Path:
        """The default (directory) backup repository; the WAL archiver (the postgres user) writes there too."""
        override = os.environ.get("MEDIANEST_BACKUP_DIR")
        if override:
            return Path(override)
        return self.clusters_dir / "backups" if os.geteuid() == 0 else self.state_dir / "backups"

    @property
    def archived_cluster_port(self) -> int:
        return _env_int("MEDIANEST_ARCHIVED_PG_PORT", 5433)

    @property
    def backup_key_file(self) -> Path:
        return self.keys_dir / "backup.key"

    @property
    def clusters_dir(self) -> Path:
        """Where scratch and drill clusters live: it must belong to the user PostgreSQL runs as."""
        override = os.environ.get("MEDIANEST_CLUSTER_DIR")
        if override:
            return Path(override)
        if os.geteuid() == 0:  # /root is not reachable for the postgres user
            return Path("/var/lib/postgresql/medianest-delivery")
        return self.state_dir / "clusters"

    @property
    def tools_dir(self) -> Path:
        """Installed tools the cluster user runs (the WAL archiver's virtual environment)."""
        return self.clusters_dir / "tools"

    @property
    def pushgateway_url(self) -> str:
        return f"http://127.0.0.1:{self.pushgateway_port}"

    @property
    def prefect_database_url(self) -> str | None:
        """The Prefect server's database: PostgreSQL as in production (None = Prefect's SQLite)."""
        value = os.environ.get("MEDIANEST_PREFECT_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/prefect")
        return None if value in ("", "sqlite") else value
