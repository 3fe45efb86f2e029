"""Root fixtures; shared helpers live in support.py (import them with `from support import ...`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO

# SLURM_CONF as the session found it. The local cluster's fixture (tests/slurm/conftest.py) points it at
# the cluster for the rest of the session; tests outside tests/slurm must not see that cluster (a
# `validate` would ask it `sbatch --test-only`), so they run with the value the session started with.
_SESSION_SLURM_CONF = os.environ.get("SLURM_CONF")
_SLURM_TESTS = REPO / "tests" / "slurm"


@pytest.fixture(autouse=True)
def _slurm_only_for_slurm_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not Path(str(request.node.path)).is_relative_to(_SLURM_TESTS):
        if _SESSION_SLURM_CONF is None:
            monkeypatch.delenv("SLURM_CONF", raising=False)
        else:
            monkeypatch.setenv("SLURM_CONF", _SESSION_SLURM_CONF)
    yield


@pytest.fixture
def repo() -> Path:
    return REPO
