"""Root fixtures; shared helpers live in support.py (import them with `from support import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO


@pytest.fixture
def repo() -> Path:
    return REPO
