"""Entry point: ``python3 -m medianest_frontend``."""

from medianest_frontend.app import FrontendApp
from medianest_shared.http import make_handler, serve
from medianest_shared.metrics import build_metrics
from medianest_shared.settings import ServiceSettings


def main() -> None:
    settings = ServiceSettings.from_env("frontend")
    metrics = build_metrics("frontend")
    app = FrontendApp(settings, metrics)
    serve(settings.host, settings.port, make_handler(app, metrics, settings.version))


if __name__ == "__main__":
    main()
