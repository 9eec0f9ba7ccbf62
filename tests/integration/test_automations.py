"""Automations on the stack's Prefect server: a rollback event and a failed backup validation
each make the server POST a notification to a webhook (a receiver on loopback)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from medianest_delivery.localstack.stack import stack_up
from medianest_delivery.settings import StackSettings
from tests.helpers import REPO_ROOT, stack_prefect_env

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append(json.loads(body or b"{}"))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_rollback_and_failed_validation_notify(receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = receiver
    settings = StackSettings()
    stack_up(settings, {"prefect-server"})
    env = stack_prefect_env(settings)
    block = f"it-notify-{uuid.uuid4().hex[:6]}"
    applied = subprocess.run(
        [
            str(Path(sys.executable).parent / "medianest-delivery"),
            "automations",
            "apply",
            "--webhook-url",
            url,
            "--block",
            block,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "release rolled back" in applied.stdout
    marker = uuid.uuid4().hex[:8]
    emitter = (
        "from tasks.events import emit_release_event, RELEASE_ROLLED_BACK\n"
        "from tasks.backup import emit_backup_event\n"
        "from prefect.events.worker import EventsWorker\n"
        f"emit_release_event(RELEASE_ROLLED_BACK, 'production', 'medianest', '9.9.9-{marker}',"
        " {'reason': 'error rate 0.31 > 0.05', 'component': 'backend'})\n"
        f"emit_backup_event('medianest.backup.validation-failed', 'it-{marker}', 'b1', {{'problems': ['row count']}})\n"
        "EventsWorker.drain_all()\n"
    )
    emitted = subprocess.run(
        [sys.executable, "-c", emitter],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert emitted.returncode == 0, emitted.stderr
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len([r for r in received if marker in json.dumps(r)]) < 2:
        time.sleep(0.5)
    mine = [r for r in received if marker in json.dumps(r)]
    subjects = sorted(r["subject"] for r in mine)
    assert len(mine) == 2, received
    assert subjects[0].startswith("MediaNest backup validation FAILED: it-")
    assert subjects[1] == "MediaNest rollback: medianest in production"
    rollback = next(r for r in mine if r["subject"].startswith("MediaNest rollback"))
    assert f"Release 9.9.9-{marker} was rolled back automatically: error rate 0.31 > 0.05" in rollback["body"]
