"""Settings validation and the HTTP adapter of the shared library."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from medianest_shared.http import BadRequest, Request, Response, make_handler
from medianest_shared.metrics import build_metrics
from medianest_shared.settings import ServiceSettings, SettingsError


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"MEDIANEST_ERROR_RATE": "2"}, "between"),
        ({"MEDIANEST_EXTRA_LATENCY_MS": "slow"}, "not a number"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ServiceSettings.from_env("backend", env)


def test_defaults_bind_loopback() -> None:
    settings = ServiceSettings.from_env("backend", {})
    assert (settings.host, settings.port, settings.error_rate) == ("127.0.0.1", 8080, 0.0)


def test_handler_serves_and_counts() -> None:
    def app(request: Request) -> tuple[str, Response]:
        if request.path == "/boom":
            raise RuntimeError("crash")
        if request.path == "/bad":
            raise BadRequest("nope")
        return "/echo", Response.json(200, {"method": request.method, "body": request.json()})

    metrics = build_metrics("test")
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(app, metrics, "9.9"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        req = urllib.request.Request(f"{base}/echo", data=b'{"a": 1}', method="POST")
        with urllib.request.urlopen(req) as reply:
            assert reply.headers["X-MediaNest-Version"] == "9.9"
            assert json.loads(reply.read()) == {"method": "POST", "body": {"a": 1}}
        weird = urllib.request.Request(f"{base}/echo", method="QUERY")
        with urllib.request.urlopen(weird) as reply:
            assert json.loads(reply.read())["method"] == "QUERY"
        for path, status in (("/boom", 500), ("/bad", 400)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{base}{path}")
            assert err.value.code == status
    finally:
        server.shutdown()
        server.server_close()
    assert 'status="500"' in metrics.render().decode()


def test_a_mounted_secret_file_wins_over_the_variable(tmp_path: Path) -> None:
    secret = tmp_path / "DATABASE_URL"
    secret.write_text("postgresql://app:pw@127.0.0.1:5433/media\n")
    env = {"DATABASE_URL": "postgresql://other@127.0.0.1/x", "DATABASE_URL_FILE": str(secret)}
    assert (
        ServiceSettings.from_env("backend", env).database_url
        == "postgresql://app:pw@127.0.0.1:5433/media"
    )


def test_an_unreadable_secret_file_names_the_variable() -> None:
    missing = {"DATABASE_URL_FILE": "/nonexistent/secret"}
    with pytest.raises(SettingsError, match="DATABASE_URL_FILE='/nonexistent/secret' cannot"):
        ServiceSettings.from_env("backend", missing)
