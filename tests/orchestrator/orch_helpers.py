"""Helpers for orchestrator tests: the brief's CSV, pipeline stage scripts, launcher variables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from support import write_stage_scripts

# An enclosing SLURM or MPI job's variables would make a local worker think it is a rank of that job.
LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "TORCHELASTIC_")


def write_digits_csv(path: Path) -> Path:
    """scikit-learn's digits as a CSV (64 pixel columns and a label), the brief's training_data.csv."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = np.column_stack([digits.data.astype(int), digits.target])
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")
    return path


write_scripts = write_stage_scripts  # shared with the SLURM pipeline tests (tests/support.py)
