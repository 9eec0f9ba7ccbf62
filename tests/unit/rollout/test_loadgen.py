"""The load generator only ever targets loopback addresses."""

from __future__ import annotations

import pytest

from medianest_delivery.errors import ConfigError
from medianest_delivery.rollout.loadgen import LoadReport, Outcome, require_loopback


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


def test_a_first_release_counts_client_failures_from_its_first_answer() -> None:
    """Refused connections before the first answer (nothing deployed yet) are left out; failures after it count."""
    report = LoadReport(
        [
            Outcome(0.1, 0, "", 0.001),
            Outcome(0.2, 0, "", 0.001),
            Outcome(0.3, 200, "1.0.0", 0.01),
            Outcome(0.4, 503, "", 0.01),
            Outcome(0.5, 200, "1.0.0", 0.01),
        ]
    )
    answered = report.since_first_answer()
    assert (answered.total, answered.failed) == (3, 1)
    assert LoadReport([Outcome(0.1, 0, "", 0.0)]).since_first_answer().total == 0
