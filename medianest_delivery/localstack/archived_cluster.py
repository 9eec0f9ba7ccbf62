"""The archived PostgreSQL cluster: created all-or-nothing, archiving through the installed WAL archiver."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from medianest_delivery.localstack.component import ComponentStatus
from medianest_delivery.localstack.prefect_api import stack_prefect_settings
from medianest_delivery.settings import StackSettings


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

        # The key lives in the stack's Prefect server. Setting PREFECT_API_URL in
        # os.environ here would come too late (Prefect reads its settings once) and
        # send the key to an ephemeral server instead: settings are set in context.
        with stack_prefect_settings(self.settings):
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
