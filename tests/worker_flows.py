"""A flow the worker tests deploy by path: it says which process ran it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


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
