"""Fixtures for orchestrator tests: a registry and run folder of their own, jobs on the local executor."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from orch_helpers import LAUNCHER_PREFIXES

from hpc_train.orchestrator import TrainingOrchestrator


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(LAUNCHER_PREFIXES) or name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.fixture
def orch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None) -> TrainingOrchestrator:
    monkeypatch.chdir(tmp_path)
    return TrainingOrchestrator(executor="local", home=tmp_path / "home", output_dir=tmp_path / "runs")
