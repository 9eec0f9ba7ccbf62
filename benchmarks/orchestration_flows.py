"""Flows measured by benchmarks/orchestration.py (kept apart so workers can load them by path)."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import NO_CACHE


@task(name="noop", cache_policy=NO_CACHE)  # every call a real task run, never a cache hit
def noop(index: int) -> int:
    return index


@task(name="stage", cache_policy=NO_CACHE)
def stage(index: int, seconds: float) -> int:
    time.sleep(seconds)
    return index


@flow(name="bench-noop-tasks")
def noop_tasks(count: int = 200) -> float:
    """Seconds the task calls took inside the flow (the flow's own start and end excluded)."""
    started = time.perf_counter()
    for i in range(count):
        noop(i)
    return time.perf_counter() - started


@flow(name="bench-sleep-stages")
def sleep_stages(count: int = 20, seconds: float = 0.5) -> float:
    started = time.perf_counter()
    for i in range(count):
        stage(i, seconds)
    return time.perf_counter() - started


@flow(name="bench-first-task")
def first_task() -> int:
    return noop(0)
