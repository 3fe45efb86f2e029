"""Files that ship inside the package, found through importlib.resources in every kind of install.

`hpc_train/templates` and `hpc_train/configs` are symbolic links to the repository's top-level
folders (the one copy in git); a built wheel holds real files in their place (pyproject.toml's
package-data), so a source checkout, an editable install and an installed wheel all read them here.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

EXAMPLE_SPECS = ("quickstart", "mlp", "reference")


def templates() -> Traversable:
    """The folder of Jinja templates (sbatch script, Apptainer definition)."""
    return files("hpc_train") / "templates"


def example_spec(name: str) -> str:
    """The text of one example job spec (one of EXAMPLE_SPECS)."""
    return (files("hpc_train") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
