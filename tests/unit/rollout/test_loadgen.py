"""The load generator only ever targets loopback addresses."""

from __future__ import annotations

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.loadgen import require_loopback


@pytest.mark.parametrize(
    "url", ["http://203.0.113.5/", "http://198.51.100.7:80/x", "http://example.com/"]
)  # documentation ranges
def test_load_generator_refuses_non_loopback(url: str) -> None:
    """A public address or a hostname other than localhost is a ConfigError."""
    with pytest.raises(ConfigError, match="not on loopback"):
        require_loopback(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:19000/api", "http://127.8.9.10/", "http://[::1]:80/", "http://localhost/"]
)
def test_load_generator_accepts_loopback(url: str) -> None:
    """Any 127.0.0.0/8 address, ::1 and localhost pass through unchanged."""
    assert require_loopback(url) == url
