"""Flows the worker tests deploy by path: which worker process ran a run, and which interpreter."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@flow(name="record-worker")
def record_worker(out_dir: str, hold_seconds: float = 2.0) -> int:
    """Hold a worker slot for a while and write the worker's pid (this run's parent process)."""
    time.sleep(hold_seconds)
    (Path(out_dir) / f"{uuid.uuid4().hex}.pid").write_text(str(os.getppid()))
    return os.getppid()


@task(name="which-process", cache_policy=NO_CACHE)
def which_process() -> dict[str, object]:
    argv = Path("/proc/self/cmdline").read_bytes().split(b"\0")
    return {"pid": os.getpid(), "argv": [a.decode() for a in argv if a]}


@flow(name="it-report-process", log_prints=True)
def report_process(sleep_seconds: float = 0.0) -> dict[str, object]:
    """Print (so the log must reach the server) and return this process's command line."""
    process = which_process()
    print(f"flow run process {process['pid']}: {' '.join(map(str, process['argv']))}")
    time.sleep(sleep_seconds)
    return process
