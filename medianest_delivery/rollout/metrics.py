"""Prometheus HTTP API client and the scrape-target files the runtime maintains."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from medianest_delivery.errors import MetricsUnavailableError
from medianest_delivery.rollout.evidence import Series


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class PrometheusClient:
    def __init__(self, base_url: str, timeout: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            response = httpx.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise MetricsUnavailableError(f"prometheus at {self.base_url} unreachable: {exc}") from exc
        if response.status_code != 200:
            raise MetricsUnavailableError(f"prometheus answered {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError as exc:  # a proxy's HTML error page, a truncated answer
            raise MetricsUnavailableError(
                f"prometheus answered something that is not JSON: {response.text[:200]!r}"
            ) from exc
        if not isinstance(body, dict) or body.get("status") != "success" or "data" not in body:
            error = body.get("error") if isinstance(body, dict) else body
            raise MetricsUnavailableError(f"prometheus query failed: {error!r}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", params)
        try:
            return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsUnavailableError(f"prometheus answer to {expr!r} is garbled: {exc!r}") from exc

    def range_series(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """Every series of a range query with its labels and timestamped points, NaNs dropped."""
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        try:
            return [
                Series(
                    dict(result["metric"]),
                    [(float(t), float(v)) for t, v in result["values"] if not math.isnan(float(v))],
                )
                for result in data["result"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise MetricsUnavailableError(f"prometheus answer to {expr!r} is garbled: {exc!r}") from exc

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base_url}/-/ready", timeout=self.timeout).status_code == 200
        except httpx.HTTPError:
            return False


def write_scrape_targets(directory: Path, name: str, groups: list[dict[str, Any]]) -> Path:
    """Atomically replace one file_sd file (Prometheus re-reads it within a second)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups, indent=2))
    tmp.replace(path)
    return path
