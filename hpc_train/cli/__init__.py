"""The `hpc-train` command line: one verb per module."""
