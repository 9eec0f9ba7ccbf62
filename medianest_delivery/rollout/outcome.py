"""How one component's rollout ended, as a value the flow acts on and the history records."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RolloutOutcome(enum.StrEnum):
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    # A failed canary whose release carried a migration that cannot be undone:
    # traffic stays on stable, the schema stays migrated.
    FROZEN = "frozen"


@dataclass
class ComponentOutcome:
    component: str
    action: RolloutOutcome
    reason: str = ""
    first_traffic_at: float | None = None
    decided_at: float | None = None
    weights: list[int] = field(default_factory=list)
    promoted: bool = False  # roles flipped: the previous slot still runs until decommissioned
    first_release: bool = False  # nothing ran before: nothing to roll back to
