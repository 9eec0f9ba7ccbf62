"""`stack up` from any checkout, after any crash: the archived cluster and the processes of the stack.

Each test uses a cluster directory, port and state directory of its own, next to
the running stack (whose Prefect server holds the backup key's Secret block).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from medianest_delivery.backup.pgcluster import LocalCluster, free_port
from medianest_delivery.localstack.archived_cluster import ArchivedCluster
from medianest_delivery.localstack.prefect_api import stack_prefect_settings
from medianest_delivery.localstack.processes import S3Emulator, project_origin
from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.settings import StackSettings

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cluster_env(
    local_stack: StackSettings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Settings for a second archived cluster: its own cluster dir (reachable by postgres), port and state dir."""
    stack_up(local_stack, {"prefect-server"})
    clusters = local_stack.clusters_dir / f"it-{uuid.uuid4().hex[:8]}"
    clusters.mkdir(parents=True)
    clusters.chmod(0o755)
    env = {
        "MEDIANEST_CLUSTER_DIR": str(clusters),
        "MEDIANEST_ARCHIVED_PG_PORT": str(free_port()),
        "MEDIANEST_STATE_DIR": str(tmp_path / "state"),
        "MEDIANEST_BACKUP_DIR": str(clusters / "backups"),
        "PREFECT_API_URL": local_stack.prefect_api_url,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The same stack's Prefect server, so the same credentials in the second state dir.
    secrets = StackSettings().prefect_auth_file
    secrets.parent.mkdir(parents=True, mode=0o700)
    secrets.write_text(local_stack.prefect_auth_file.read_text())
    yield env
    stop_archived_cluster(StackSettings())
    shutil.rmtree(clusters, ignore_errors=True)


def stop_archived_cluster(settings: StackSettings) -> None:
    ArchivedCluster(settings).cluster().stop("immediate")


def assert_archiving_works(settings: StackSettings) -> None:
    """The cluster runs on its own port and PostgreSQL's own archiver stores a switched segment."""
    component = ArchivedCluster(settings)
    cluster = component.cluster()
    assert cluster.running()
    assert cluster.auto_setting("port") == str(settings.archived_cluster_port)
    command = cluster.auto_setting("archive_command") or ""
    assert command.startswith(str(settings.tools_dir / "walarchive" / "bin" / "medianest-walarchive")), command
    assert component.status().stale == ""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS proof (id serial PRIMARY KEY)")
        conn.execute("INSERT INTO proof DEFAULT VALUES")
        conn.execute("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 60
        archived = failed = 0
        while time.monotonic() < deadline:
            row = conn.execute("SELECT archived_count, failed_count FROM pg_stat_archiver").fetchone()
            assert row is not None
            archived, failed = row
            if archived or failed:
                break
            time.sleep(0.5)
    assert failed == 0, f"the archiver failed {failed} times"
    assert archived >= 1, "no segment was archived within 60 s"


# Where a run of `stack up` is killed (SIGKILL, no cleanup): after each step of creating
# the archived cluster. Each entry patches one function of the child process.
KILL_POINTS = {
    "after the backup key": "patch_after(blocks.backup, 'ensure_backup_key')",
    "after the archiver config": "patch_after(physical, 'write_archiver_config')",
    "while installing the archiver's packages": "patch_before(archiver_install, 'run_command', when='pip')",
    "after proving the archiver, before its stamp": "patch_after(archiver_install, '_prove')",
    "after initdb": "patch_after(pgcluster.LocalCluster, 'initdb')",
    "after configuring, before the rename": "patch_after(pgcluster.LocalCluster, 'configure')",
    "after starting": "patch_after(pgcluster.LocalCluster, 'start')",
}

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import blocks.backup
    from medianest_delivery.backup import archiver_install, pgcluster, physical
    from medianest_delivery.settings import StackSettings
    from medianest_delivery.localstack.archived_cluster import ArchivedCluster

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def patch_after(owner, name):
        original = getattr(owner, name)
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            die()
            return result
        setattr(owner, name, wrapper)

    def patch_before(owner, name, when):
        original = getattr(owner, name)
        def wrapper(argv, *args, **kwargs):
            if when in argv:
                die()
            return original(argv, *args, **kwargs)
        setattr(owner, name, wrapper)

    exec(sys.argv[1])
    ArchivedCluster(StackSettings()).start()
    print("not killed")
    """
)


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_archived_cluster_comes_up_after_a_kill_at_any_step(point: str, cluster_env: dict[str, str]) -> None:
    """Kill `stack up` at one step of creating the archived cluster; the next `stack up` brings it up, archiving.

    Regression (issue 9): a run killed after initdb left a data directory without
    settings, and every later `up` started it on port 5432, already taken.
    """
    child = subprocess.run(
        [sys.executable, "-c", CHILD, KILL_POINTS[point]],
        env={**os.environ, **cluster_env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, f"{point}: the child was not killed\n{child.stdout}{child.stderr}"

    settings = StackSettings()
    stack_up(settings, {"archived-postgres"})
    assert_archiving_works(settings)
    assert not (settings.clusters_dir / "archived" / "data.partial").exists()


def test_half_made_data_directory_from_an_older_version_is_repaired(cluster_env: dict[str, str]) -> None:
    """A `data` directory that initdb made but nobody configured (what older versions left) is configured, not
    started on PostgreSQL's default port."""
    settings = StackSettings()
    half_made = LocalCluster(settings.clusters_dir / "archived" / "data", settings.archived_cluster_port)
    half_made.initdb()
    stack_up(settings, {"archived-postgres"})
    assert_archiving_works(settings)


def test_checkout_in_a_closed_home_directory_archives(local_stack: StackSettings, cluster_env: dict[str, str]) -> None:
    """Clone into a 0700 directory (as root's home), `uv sync`, `stack up` the archived cluster from there.

    Regression (issue 9): the archiver ran from the checkout through PYTHONPATH with a
    venv interpreter the postgres user could not execute; `stack up` failed.
    """
    from uv import find_uv_bin

    home = Path(cluster_env["MEDIANEST_STATE_DIR"]).parent / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    clone = home / "medianest-delivery"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(clone)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    subprocess.run([str(find_uv_bin()), "sync", "--frozen", "--quiet"], cwd=clone, env=env, check=True, timeout=900)
    up = subprocess.run(
        [str(clone / ".venv" / "bin" / "medianest-delivery"), "stack", "up", "--only", "archived-postgres"],
        cwd=clone,
        env={**env, **cluster_env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    settings = StackSettings()
    assert_archiving_works(settings)
    command = ArchivedCluster(settings).cluster().auto_setting("archive_command") or ""
    assert str(home) not in command  # nothing of the closed checkout is on PostgreSQL's path


def test_archiver_install_is_reused_and_a_half_made_one_rebuilt(cluster_env: dict[str, str]) -> None:
    """The same sources reuse the install; one without its stamp (a killed install) is built again and proven."""
    from medianest_delivery.backup.archiver_install import STAMP, install_archiver, installed_fingerprint
    from medianest_delivery.backup.pgcluster import run_as_cluster_user

    tools = StackSettings().tools_dir
    script = install_archiver(tools)
    stamp = tools / "walarchive" / STAMP
    first = stamp.stat().st_mtime_ns
    assert install_archiver(tools) == script
    assert stamp.stat().st_mtime_ns == first, "a current install was rebuilt"

    fingerprint = installed_fingerprint(tools)
    stamp.unlink()
    shutil.rmtree(tools / f"walarchive-{fingerprint}" / "lib")  # as a kill mid-install leaves it
    assert install_archiver(tools) == script
    assert installed_fingerprint(tools) == fingerprint
    assert run_as_cluster_user([str(script), "--help"]).returncode == 0


def test_process_started_from_another_checkout_is_restarted(local_stack: StackSettings, tmp_path: Path) -> None:
    """`stack status` names a process we started from another checkout; `stack up` restarts it from this one.

    Regression (issue 9): the S3 emulator of a removed checkout kept answering and was
    reused, then failed at its next lazy import.
    """
    settings = dataclasses.replace(local_stack, state_dir=tmp_path / "state", s3_port=free_port())
    emulator = S3Emulator(settings)
    emulator.start()
    try:
        old_pid = emulator.our_pid()
        emulator.origin_file.write_text(json.dumps({**project_origin(), "checkout": "/removed/checkout"}))
        status = emulator.status()
        assert "/removed/checkout" in status.stale

        after = {s.name: s for s in stack_up(settings, {"s3-emulator"})}["s3-emulator"]
        assert after.running
        assert after.stale == ""
        assert emulator.our_pid() not in (None, old_pid)
        assert json.loads(emulator.origin_file.read_text()) == project_origin()
    finally:
        emulator.stop()


def test_stack_up_without_a_prefect_profile_keeps_the_key_in_the_stacks_server(
    cluster_env: dict[str, str], tmp_path: Path
) -> None:
    """`stack up` from a shell with no PREFECT_API_URL and an empty Prefect home (a fresh machine) reads the
    backup key from the stack's own Prefect server.

    Regression: the archived cluster set PREFECT_API_URL in os.environ after Prefect had read its settings, so
    the key went to a temporary server (which timed out on a slow first start, failing `make stack-up`).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({k: v for k, v in cluster_env.items() if k != "PREFECT_API_URL"})
    env.update({"PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "from medianest_delivery.localstack.archived_cluster import ArchivedCluster\n"
            "from medianest_delivery.settings import StackSettings\n"
            "ArchivedCluster(StackSettings()).start()\n",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "temporary server" not in child.stdout + child.stderr
    from blocks.backup import load_backup_key

    settings = StackSettings()
    with stack_prefect_settings(settings):  # the stack's server, not this session's test harness
        assert load_backup_key().encoded() == settings.backup_key_file.read_text()
    assert_archiving_works(settings)
