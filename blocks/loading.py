"""Load a saved block by name, or use the local-stack default when no name is given."""

from __future__ import annotations

from typing import TypeVar, cast

from prefect.blocks.core import Block

B = TypeVar("B", bound=Block)


def load_or_default(block_type: type[B], name: str | None, default: B) -> B:
    # Block.load is sync-compatible (typed as a union with a coroutine); in a sync flow it returns the block.
    return cast(B, block_type.load(name)) if name else default
