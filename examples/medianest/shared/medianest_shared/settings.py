"""Runtime settings read from the environment, with the fault-injection knobs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not a number") from exc
    if not low <= value <= high:
        raise SettingsError(f"{name}={raw!r} must be between {low} and {high}")
    return value


def _value_or_file(env: Mapping[str, str], name: str, default: str) -> str:
    """``NAME_FILE`` (a mounted secret, as on Docker Swarm) wins over ``NAME``.

    The value then never sits in the environment, where `docker inspect` would show it.
    """
    path = env.get(f"{name}_FILE", "")
    if path:
        try:
            with open(path, encoding="utf-8") as secret:
                return secret.read().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from exc
    return env.get(name, default)


@dataclass(frozen=True)
class ServiceSettings:
    """What a MediaNest service needs to start.

    ``error_rate`` (0..1) and ``extra_latency_ms`` inject faults so that a "bad"
    release can be shipped on purpose to exercise canary analysis and rollback.
    """

    service: str
    version: str
    host: str
    port: int
    database_url: str
    backend_url: str
    error_rate: float
    extra_latency_ms: float

    @classmethod
    def from_env(cls, service: str, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env
        port_raw = env.get("PORT", "8080")
        if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
            raise SettingsError(f"PORT={port_raw!r} is not a TCP port")
        return cls(
            service=service,
            version=env.get("MEDIANEST_VERSION", "dev"),
            host=env.get("BIND_HOST", "127.0.0.1"),
            port=int(port_raw),
            database_url=_value_or_file(
                env, "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/medianest"
            ),
            backend_url=env.get("BACKEND_URL", "http://127.0.0.1:8080"),
            error_rate=_float(env, "MEDIANEST_ERROR_RATE", 0.0, 0.0, 1.0),
            extra_latency_ms=_float(env, "MEDIANEST_EXTRA_LATENCY_MS", 0.0, 0.0, 60_000.0),
        )
