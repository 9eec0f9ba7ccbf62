"""A flow for the worker tests: it records which worker process ran it."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from prefect import flow


@flow(name="record-worker")
def record_worker(out_dir: str, hold_seconds: float = 2.0) -> int:
    """Hold a worker slot for a while and write the worker's pid (this run's parent process)."""
    time.sleep(hold_seconds)
    (Path(out_dir) / f"{uuid.uuid4().hex}.pid").write_text(str(os.getppid()))
    return os.getppid()
