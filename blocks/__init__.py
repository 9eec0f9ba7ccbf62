"""Prefect blocks: configuration and connections, nothing else.

Every default points at the embedded local stack, so nothing needs to be
registered for the demo; save a block with other values to point the flows at
GHCR, a remote Docker host or a managed signing key.
"""

from blocks.delivery import MetricsProvider, ReleaseHistoryDatabase
from blocks.registry import OciRegistry
from blocks.signing import SigningKey

__all__ = ["MetricsProvider", "OciRegistry", "ReleaseHistoryDatabase", "SigningKey"]
