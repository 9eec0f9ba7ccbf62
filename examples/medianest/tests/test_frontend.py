"""Frontend page rendering and readiness against a stubbed backend fetch."""

from __future__ import annotations

from typing import Any

from medianest_frontend.app import FrontendApp, render_catalogue
from medianest_shared.http import Request
from medianest_shared.metrics import build_metrics
from medianest_shared.settings import ServiceSettings


def make_app(fetch: Any) -> FrontendApp:
    settings = ServiceSettings.from_env("frontend", {"MEDIANEST_VERSION": "2.0.0"})
    return FrontendApp(settings, build_metrics("frontend"), fetch=fetch)


def down(url: str) -> Any:
    raise ConnectionError(url)


def test_catalogue_escapes_titles() -> None:
    page = render_catalogue([{"title": "<script>", "kind": "movie"}], "1")
    assert "&lt;script&gt;" in page and "<script>" not in page
    assert "empty catalogue" in render_catalogue([], "1")


def test_index_renders_backend_items() -> None:
    app = make_app(lambda url: {"items": [{"title": "Dune", "kind": "movie"}]})
    route, response = app(Request("GET", "/"))
    assert (route, response.status) == ("/", 200)
    assert b"Dune" in response.body


def test_backend_down_degrades() -> None:
    app = make_app(down)
    assert app(Request("GET", "/"))[1].status == 502
    assert app(Request("GET", "/ready"))[1].status == 503
    assert app(Request("GET", "/health"))[1].status == 200


def test_other_routes() -> None:
    app = make_app(lambda url: {"status": "ok"})
    assert app(Request("GET", "/ready"))[1].status == 200
    assert b"2.0.0" in app(Request("GET", "/version"))[1].body
    assert app(Request("GET", "/metrics"))[1].status == 200
    assert app(Request("GET", "/missing"))[1].status == 404
    assert app(Request("POST", "/"))[1].status == 405
