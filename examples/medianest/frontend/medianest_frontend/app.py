"""Routes of the frontend as a plain function of the request."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any
from urllib.request import urlopen

from medianest_shared.http import Request, Response, method_not_allowed
from medianest_shared.metrics import ServiceMetrics
from medianest_shared.settings import ServiceSettings

Fetch = Callable[[str], Any]


def fetch_json(url: str) -> Any:
    with urlopen(url, timeout=3) as reply:  # noqa: S310 - URL comes from our own settings
        return json.loads(reply.read())


def render_catalogue(items: list[dict[str, Any]], version: str) -> str:
    rows = "".join(
        f"<li>{html.escape(str(i['title']))} <small>({html.escape(str(i['kind']))})</small></li>"
        for i in items
    )
    return (
        "<!doctype html><html><head><title>MediaNest</title></head><body>"
        f"<h1>MediaNest</h1><ul id='media'>{rows or '<li>empty catalogue</li>'}</ul>"
        f"<footer>frontend {html.escape(version)}</footer></body></html>"
    )


class FrontendApp:
    def __init__(
        self, settings: ServiceSettings, metrics: ServiceMetrics, fetch: Fetch = fetch_json
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.fetch = fetch

    def __call__(self, request: Request) -> tuple[str, Response]:
        path = request.path.split("?", 1)[0]
        if request.method != "GET":
            return method_not_allowed(request.method)
        if path == "/health":
            return path, Response.json(200, {"status": "ok"})
        if path == "/ready":
            try:
                self.fetch(f"{self.settings.backend_url}/health")
            except Exception as exc:  # noqa: BLE001 - backend unreachable means not ready
                return path, Response.json(
                    503, {"status": "backend unreachable", "reason": str(exc)}
                )
            return path, Response.json(200, {"status": "ready"})
        if path == "/version":
            return path, Response.json(
                200, {"service": self.settings.service, "version": self.settings.version}
            )
        if path == "/metrics":
            return path, Response(200, self.metrics.render(), "text/plain; version=0.0.4")
        if path == "/":
            try:
                items = self.fetch(f"{self.settings.backend_url}/api/media")["items"]
            except Exception:  # noqa: BLE001 - degrade to an error page, counted as 502
                return path, Response(502, b"<h1>catalogue unavailable</h1>", "text/html")
            body = render_catalogue(items, self.settings.version).encode()
            return path, Response(200, body, "text/html; charset=utf-8")
        return "not-found", Response.json(404, {"error": f"no route {path}"})
