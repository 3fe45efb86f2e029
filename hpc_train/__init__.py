"""hpc-train: train ML models on SLURM clusters the way good HPC engineers would."""

__version__ = "0.1.0"
