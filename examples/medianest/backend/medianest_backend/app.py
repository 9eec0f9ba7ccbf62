"""Routes of the backend API as a plain function of the request."""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from pathlib import Path

from medianest_backend.store import VALID_KINDS, MediaStore
from medianest_shared.http import BadRequest, Request, Response, method_not_allowed
from medianest_shared.metrics import ServiceMetrics
from medianest_shared.settings import ServiceSettings

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
_MEDIA_ID = re.compile(r"^/api/media/(\d+)$")


class BackendApp:
    def __init__(
        self,
        settings: ServiceSettings,
        store: MediaStore,
        metrics: ServiceMetrics,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.rng = rng
        self.sleep = sleep
        self.openapi = OPENAPI_PATH.read_bytes()

    def __call__(self, request: Request) -> tuple[str, Response]:
        path = request.path.split("?", 1)[0]
        if request.method != "GET" and not path.startswith("/api/"):
            return method_not_allowed(request.method)
        if path == "/health":
            return path, Response.json(200, {"status": "ok"})
        if path == "/ready":
            return path, self._ready()
        if path == "/version":
            return path, Response.json(
                200, {"service": self.settings.service, "version": self.settings.version}
            )
        if path == "/openapi.json":
            return path, Response(200, self.openapi)
        if path == "/metrics":
            return path, Response(200, self.metrics.render(), "text/plain; version=0.0.4")
        if path.startswith("/api/"):
            return self._api(request, path)
        return "not-found", Response.json(404, {"error": f"no route {path}"})

    def _ready(self) -> Response:
        try:
            self.store.ping()
        except Exception as exc:  # noqa: BLE001 - any DB failure means not ready
            return Response.json(503, {"status": "unavailable", "reason": type(exc).__name__})
        return Response.json(200, {"status": "ready"})

    def _inject_faults(self) -> Response | None:
        if self.settings.extra_latency_ms:
            self.sleep(self.settings.extra_latency_ms / 1000.0)
        if self.settings.error_rate and self.rng() < self.settings.error_rate:
            return Response.json(500, {"error": "injected fault"})
        return None

    def _api(self, request: Request, path: str) -> tuple[str, Response]:
        match = _MEDIA_ID.match(path)
        route = "/api/media/{id}" if match else path
        fault = self._inject_faults()
        if fault is not None:
            return route, fault
        if match and request.method == "GET":
            item = self.store.get_media(int(match.group(1)))
            if item is None:
                return route, Response.json(404, {"error": "media not found"})
            return route, Response.json(200, item)
        if path == "/api/media" and request.method == "GET":
            return route, Response.json(200, {"items": self.store.list_media(limit=100)})
        if path == "/api/media" and request.method == "POST":
            return route, Response.json(201, self.store.add_media(*validate_new_media(request)))
        if match or path == "/api/media":
            return method_not_allowed(request.method)
        return route, Response.json(404, {"error": f"no route {path}"})


def validate_new_media(request: Request) -> tuple[str, str]:
    payload = request.json()
    if not isinstance(payload, dict):
        raise BadRequest("body must be a JSON object")
    title, kind = payload.get("title"), payload.get("kind")
    if not isinstance(title, str) or not 1 <= len(title.strip()) <= 200:
        raise BadRequest("title must be a string of 1 to 200 characters")
    if kind not in VALID_KINDS:
        raise BadRequest(f"kind must be one of {', '.join(VALID_KINDS)}")
    return title.strip(), str(kind)
