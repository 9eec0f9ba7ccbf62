"""The HAProxy routers that `deliver` starts per environment, as the stack sees them."""

from __future__ import annotations

from typing import Any

from medianest_delivery.localstack.component import ComponentStatus
from medianest_delivery.settings import StackSettings


class EnvironmentRouters:
    """The HAProxy routers that `deliver` starts per environment: shown by status, stopped by down."""

    name = "routers"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings

    def _routers(self) -> list[Any]:
        from medianest_delivery.rollout.router import HAProxyRouter

        root = self.settings.routers_dir
        return [HAProxyRouter(root, d.name) for d in sorted(root.glob("*")) if d.is_dir()] if root.is_dir() else []

    def status(self) -> ComponentStatus:
        running = [r.environment for r in self._routers() if r.running()]
        detail = ", ".join(running) if running else "none (deliver starts them)"
        return ComponentStatus(self.name, True, str(self.settings.routers_dir), bool(running), detail)

    def start(self) -> None:
        """Routers belong to environments: `deliver` starts them from their persisted state."""

    def stop(self) -> bool:
        return any([router.stop() for router in self._routers()])
