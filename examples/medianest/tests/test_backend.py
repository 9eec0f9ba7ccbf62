"""Backend routes, validation and fault injection, against an in-memory store."""

from __future__ import annotations

import json
from typing import Any

import pytest

from medianest_backend.app import BackendApp, validate_new_media
from medianest_shared.http import BadRequest, Request
from medianest_shared.metrics import build_metrics
from medianest_shared.settings import ServiceSettings


class MemoryStore:
    def __init__(self, healthy: bool = True) -> None:
        self.items: list[dict[str, Any]] = []
        self.healthy = healthy

    def ping(self) -> None:
        if not self.healthy:
            raise ConnectionError("db down")

    def list_media(self, limit: int) -> list[dict[str, Any]]:
        return self.items[:limit]

    def get_media(self, media_id: int) -> dict[str, Any] | None:
        return next((i for i in self.items if i["id"] == media_id), None)

    def add_media(self, title: str, kind: str) -> dict[str, Any]:
        item = {"id": len(self.items) + 1, "title": title, "kind": kind}
        self.items.append(item)
        return item


def make_app(store: MemoryStore | None = None, **env: str) -> BackendApp:
    settings = ServiceSettings.from_env("backend", {"MEDIANEST_VERSION": "1.2.3", **env})
    return BackendApp(
        settings,
        store or MemoryStore(),
        build_metrics("backend"),
        rng=lambda: 0.5,
        sleep=lambda s: None,
    )


def body(response: Any) -> Any:
    return json.loads(response.body)


def test_health_version_and_openapi() -> None:
    app = make_app()
    assert app(Request("GET", "/health"))[1].status == 200
    assert body(app(Request("GET", "/version"))[1]) == {"service": "backend", "version": "1.2.3"}
    spec = body(app(Request("GET", "/openapi.json"))[1])
    assert "/api/media" in spec["paths"]


def test_ready_reflects_database() -> None:
    assert make_app(MemoryStore(healthy=True))(Request("GET", "/ready"))[1].status == 200
    assert make_app(MemoryStore(healthy=False))(Request("GET", "/ready"))[1].status == 503


def test_create_list_get_media() -> None:
    app = make_app()
    route, created = app(Request("POST", "/api/media", b'{"title": " Alien ", "kind": "movie"}'))
    assert (route, created.status, body(created)["title"]) == ("/api/media", 201, "Alien")
    assert body(app(Request("GET", "/api/media"))[1])["items"][0]["kind"] == "movie"
    route, one = app(Request("GET", "/api/media/1"))
    assert (route, one.status) == ("/api/media/{id}", 200)
    assert app(Request("GET", "/api/media/99"))[1].status == 404
    assert app(Request("DELETE", "/api/media"))[1].status == 405
    assert app(Request("GET", "/api/unknown"))[1].status == 404
    assert app(Request("GET", "/nope"))[1].status == 404
    assert app(Request("TRACE", "/health"))[1].status == 405


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("not an object", b"[]", "JSON object"),
        ("empty title", b'{"title": "", "kind": "movie"}', "title"),
        ("bad kind", b'{"title": "x", "kind": "book"}', "kind must be one of"),
        ("not json", b"{", "not JSON"),
        ("not utf-8", b"\xff", "not JSON"),
    ],
)
def test_invalid_media_is_rejected(name: str, payload: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        validate_new_media(Request("POST", "/api/media", payload))


def test_error_knob_fails_api_requests_only() -> None:
    app = make_app(MEDIANEST_ERROR_RATE="0.9")  # rng returns 0.5 < 0.9: every API call fails
    assert app(Request("GET", "/api/media"))[1].status == 500
    assert app(Request("GET", "/health"))[1].status == 200


def test_latency_knob_sleeps() -> None:
    slept: list[float] = []
    settings = ServiceSettings.from_env("backend", {"MEDIANEST_EXTRA_LATENCY_MS": "250"})
    app = BackendApp(settings, MemoryStore(), build_metrics("backend"), sleep=slept.append)
    app(Request("GET", "/api/media"))
    assert slept == [0.25]


def test_metrics_exposes_counter_and_histogram() -> None:
    metrics = build_metrics("backend")
    metrics.observe("1.2.3", "/api/media", "GET", 200, 0.12)
    text = metrics.render().decode()
    assert (
        'http_requests_total{method="GET",route="/api/media",status="200",version="1.2.3"} 1.0'
        in text
    )
    assert "http_request_duration_seconds_bucket" in text
    app = BackendApp(ServiceSettings.from_env("backend", {}), MemoryStore(), metrics)
    assert b"http_requests_total" in app(Request("GET", "/metrics"))[1].body
