"""Entry point: ``python3 -m medianest_backend``."""

from medianest_backend.app import BackendApp
from medianest_backend.store import PostgresMediaStore
from medianest_shared.http import make_handler, serve
from medianest_shared.metrics import build_metrics
from medianest_shared.settings import ServiceSettings


def main() -> None:
    settings = ServiceSettings.from_env("backend")
    metrics = build_metrics("backend")
    app = BackendApp(settings, PostgresMediaStore(settings.database_url), metrics)
    serve(settings.host, settings.port, make_handler(app, metrics, settings.version))


if __name__ == "__main__":
    main()
