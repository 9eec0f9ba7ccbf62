"""A small threaded HTTP server: handlers are plain functions returning Response."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from medianest_shared.metrics import ServiceMetrics


@dataclass
class Request:
    method: str
    path: str
    body: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for non-UTF-8 bytes
            raise BadRequest(f"body is not JSON: {exc}") from exc


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload).encode())


def method_not_allowed(method: str) -> tuple[str, Response]:
    return "method-not-allowed", Response.json(405, {"error": f"{method} not allowed"})


class BadRequest(ValueError):
    """The client sent something the API cannot accept (HTTP 400)."""


App = Callable[[Request], "tuple[str, Response]"]


def make_handler(app: App, metrics: ServiceMetrics, version: str) -> type[BaseHTTPRequestHandler]:
    """Adapt ``app`` (returns the route template and a Response) to http.server."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            started = time.perf_counter()
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, self.rfile.read(length) if length else b"")
            try:
                route, response = app(request)
            except BadRequest as exc:
                route, response = "bad-request", Response.json(400, {"error": str(exc)})
            except Exception as exc:  # noqa: BLE001 - a crash becomes a 500, not a dead thread
                route, response = "error", Response.json(500, {"error": type(exc).__name__})
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("X-MediaNest-Version", version)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(response.body)
            if route != "/metrics":
                metrics.observe(
                    version, route, self.command, response.status, time.perf_counter() - started
                )

        def __getattr__(self, name: str) -> Any:
            # Every method (TRACE, QUERY, ...) reaches the app, which answers 405 where a
            # route does not take it; http.server's default for unknown methods is a 501.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass  # access logs go to metrics; stdout stays quiet under load

    return Handler


def serve(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.serve_forever()
