"""A stack process knows which checkout started it: one from elsewhere is reported stale."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from medianest_delivery.localstack.processes import PrefectServer, Pushgateway, project_origin
from medianest_delivery.settings import StackSettings
from tests.helpers import REPO_ROOT


def settings_in(tmp_path: Path) -> StackSettings:
    """A state dir of its own, and ports nothing listens on (not the real stack's servers)."""
    return dataclasses.replace(StackSettings(), state_dir=tmp_path, prefect_port=9, registry_port=9)


def record(component: PrefectServer | Pushgateway, origin: dict[str, str]) -> None:
    """Pretend `component` runs as this test process, started from `origin`."""
    component.run_dir.mkdir(parents=True, exist_ok=True)
    component.pid_file.write_text(str(os.getpid()))
    own_argv = [a.decode() for a in Path("/proc/self/cmdline").read_bytes().split(b"\0") if a]
    component.argv_file.write_text(json.dumps(own_argv))
    component.origin_file.write_text(json.dumps(origin))


def test_process_from_this_checkout_is_current(tmp_path: Path) -> None:
    """Same checkout, interpreter and version: nothing to restart."""
    server = PrefectServer(settings_in(tmp_path))
    record(server, project_origin())
    assert server.stale_reason() == ""


def test_process_from_another_checkout_is_stale_and_named(tmp_path: Path) -> None:
    """A server running another checkout's venv is reported with that checkout's path and ours."""
    server = PrefectServer(settings_in(tmp_path))
    record(server, {**project_origin(), "checkout": "/gone/medianest-delivery", "python": "/gone/.venv/bin/python"})
    reason = server.stale_reason()
    assert "/gone/medianest-delivery" in reason
    assert str(REPO_ROOT) in reason


def test_process_without_an_origin_record_is_stale(tmp_path: Path) -> None:
    """Started by a version that kept no record: we cannot vouch for it, so `up` restarts it."""
    server = PrefectServer(settings_in(tmp_path))
    record(server, project_origin())
    server.origin_file.unlink()
    assert server.stale_reason().startswith("started from checkout ?")


def test_system_binaries_do_not_depend_on_the_checkout(tmp_path: Path) -> None:
    """The pushgateway is Debian's binary with no file of ours: never restarted for a checkout change."""
    gateway = Pushgateway(settings_in(tmp_path))
    record(gateway, {"checkout": "/elsewhere"})
    assert gateway.stale_reason() == ""


def test_a_process_we_do_not_own_is_never_called_stale(tmp_path: Path) -> None:
    """Without a live pid of ours there is nothing `up` could restart."""
    server = PrefectServer(settings_in(tmp_path))
    record(server, {"checkout": "/elsewhere"})
    server.pid_file.write_text("999999999")
    assert server.stale_reason() == ""


def test_a_stale_pid_file_naming_another_process_is_not_ours(tmp_path: Path) -> None:
    """A pid file whose number now belongs to some other process (pid reuse) is never taken for ours."""
    server = PrefectServer(settings_in(tmp_path))
    record(server, project_origin())
    server.argv_file.write_text(json.dumps(["/usr/bin/prefect", "server", "start"]))
    assert server.our_pid() is None
    assert server.stop() is False  # nothing was signalled
