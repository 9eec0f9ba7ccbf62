"""Shared test helpers: fixture paths and loaders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_APP = REPO_ROOT / "examples" / "medianest"


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())
