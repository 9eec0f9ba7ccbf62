"""One small exception hierarchy: every error says what is wrong and what to do."""

from __future__ import annotations

from typing import Any


class DeliveryError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(DeliveryError, ValueError):
    """An app config, ignore file, reference or parameter is invalid."""


class MissingBackupKeyError(ConfigError):
    """The backup key's Secret block does not exist (create it with `backup init-key`)."""


class ToolMissingError(DeliveryError, FileNotFoundError):
    """A required executable (trivy, docker, mmdebstrap...) is not installed."""


class CommandFailedError(DeliveryError, RuntimeError):
    """A subprocess exited non-zero; the message carries its argv and output tail."""

    def __init__(self, argv: list[str], returncode: int, output: str, tail_lines: int = 40) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.splitlines()[-tail_lines:])
        super().__init__(f"command {argv!r} exited with {returncode}; last output:\n{tail}")


class GateFailedError(DeliveryError, RuntimeError):
    """A quality or security gate blocked the release."""


class RegistryError(DeliveryError, ConnectionError):
    """The OCI registry refused or could not be reached (transient: retried)."""


class VerificationError(DeliveryError, RuntimeError):
    """A signature, attestation or digest does not match: the image is not trusted."""


class StackError(DeliveryError, RuntimeError):
    """A component of the local stack failed to start or answer."""


class RepositoryError(DeliveryError, ConnectionError):
    """The backup repository (directory or S3) failed an operation (transient: retried)."""


class DatabaseUnavailableError(DeliveryError, ConnectionError):
    """PostgreSQL could not be reached (transient: retried, then reported by name)."""


class LockBusyError(DeliveryError, RuntimeError):
    """Another run holds the stanza or environment; retry later (or supersede, for rollouts)."""


class HistoryUnavailableError(DeliveryError, ConnectionError):
    """The release-history database cannot be reached."""


class SourceFetchError(DeliveryError, ConnectionError):
    """A repository could not be fetched (unreachable, refused, not there): worth a retry."""


class MetricsUnavailableError(DeliveryError, ConnectionError):
    """Prometheus could not be queried; analysis records this as an Error measurement."""


class RolloutFailedError(DeliveryError, RuntimeError):
    """Production was returned to the previous release (or frozen on it); the flow run fails with the reason."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary
