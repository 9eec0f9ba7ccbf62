"""Blocks for progressive delivery: where metrics and release history live."""

from __future__ import annotations

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from medianest_delivery.rollout.history import ReleaseHistory, ensure_database
from medianest_delivery.rollout.metrics import PrometheusClient
from medianest_delivery.settings import StackSettings


class MetricsProvider(Block):
    """The Prometheus that scrapes the environments (the local stack's by default)."""

    _block_type_name = "MediaNest Metrics Provider"

    url: str = Field(default="http://127.0.0.1:9090", description="Prometheus base URL")
    timeout_seconds: float = Field(default=3.0, gt=0, description="per-query timeout")

    def get_client(self) -> PrometheusClient:
        return PrometheusClient(self.url, self.timeout_seconds)


class ReleaseHistoryDatabase(Block):
    """PostgreSQL holding every deploy, promotion, rollback and analysis measurement."""

    _block_type_name = "MediaNest Release History"

    dsn: SecretStr = Field(
        default_factory=lambda: SecretStr(StackSettings().history_dsn),
        description="libpq connection string (default: the local stack's, MEDIANEST_HISTORY_DSN)",
    )

    def get_client(self) -> ReleaseHistory:
        """The history store, its database and tables created on first use."""
        store = ReleaseHistory(self.dsn.get_secret_value())
        ensure_database(store.dsn)
        return store
