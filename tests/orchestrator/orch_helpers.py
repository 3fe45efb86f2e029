"""Helpers for orchestrator tests: the brief's CSV, pipeline stage scripts, launcher variables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def write_scripts(folder: Path, fail_stage: str | None = None) -> list[dict[str, str]]:
    """preprocess.py, train.py, evaluate.py: each appends its name to stages.log; one may exit 1."""
    stages = [("data_preprocessing", "preprocess.py"), ("model_training", "train.py"),
              ("model_evaluation", "evaluate.py")]
    for stage, script in stages:
        body = f"import pathlib\nwith pathlib.Path('stages.log').open('a') as f:\n    f.write('{stage}\\n')\n"
        if stage == fail_stage:
            body += "import sys\nprint('training data is corrupt', file=sys.stderr)\nsys.exit(1)\n"
        (folder / script).write_text(body)
    return [{"stage": stage, "script": script} for stage, script in stages]
