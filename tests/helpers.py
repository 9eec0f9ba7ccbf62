"""Shared test helpers: fixture paths and loaders."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_APP = REPO_ROOT / "examples" / "medianest"


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


def stack_prefect_env(settings: Any, **extra: str) -> dict[str, str]:
    """This process's environment, pointed (with its credentials) at the stack's Prefect server."""
    import os

    from medianest_delivery.localstack.prefect_api import prefect_client_env

    return {**os.environ, **prefect_client_env(settings), **extra}


def stack_prefect_client(settings: Any) -> Any:
    """A client of the stack's server: Prefect read its settings at import, so it is told URL and credentials."""
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(settings.prefect_api_url, auth_string=settings.prefect_auth_string())


def served_app_repository(tmp_path: Path) -> tuple[Path, Path]:
    """The sample app as a repository of its own: (bare origin, a working clone on main to push from).

    Its release policy also allows builds from file:// and git://127.0.0.1 URLs (where tests serve it).
    Nothing of it is checked out where the flows run: they fetch it from the origin.
    """
    import shutil
    import subprocess

    work = tmp_path / "app-work"
    shutil.copytree(SAMPLE_APP, work, ignore=shutil.ignore_patterns("__pycache__", ".reports", ".coverage"))
    policy = work / "release-policy.yaml"
    original = (
        'source_repositories: ["https://github.com/medianest/medianest", "https://github.com/medianest/delivery"]'
    )
    text = policy.read_text()
    assert original in text, "the sample policy's source_repositories line moved"
    policy.write_text(
        text.replace(
            original,
            'source_repositories: ["https://github.com/medianest/medianest", "file://*", "git://127.0.0.1:*"]',
        )
    )
    bare = tmp_path / "app.git"

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)

    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    git("init", "-q", "-b", "main")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    git("add", ".")
    git("commit", "-q", "-m", "app")
    git("remote", "add", "origin", str(bare))
    git("push", "-q", "origin", "main")
    return bare, work


@contextlib.contextmanager
def git_daemon(directory: Path) -> Iterator[str]:
    """`git daemon` exporting every repository under ``directory`` on 127.0.0.1; yields its git:// base URL."""
    import socket
    import subprocess
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    argv = ["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={directory}", "--listen=127.0.0.1"]
    daemon = subprocess.Popen(
        [*argv, f"--port={port}", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"git://127.0.0.1:{port}"
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
