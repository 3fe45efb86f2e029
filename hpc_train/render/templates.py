"""The Jinja environment for hpc-train's templates: StrictUndefined, quoting filters, no autoescape."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import jinja2

from hpc_train.render.shell import (
    definition_line,
    env_name,
    require_filtered,
    sbatch_quote,
    shell_quote,
    shell_words,
)


def templates_dir() -> Path:
    """Where templates live: $HPC_TRAIN_TEMPLATES, else the repository's templates/ folder."""
    override = os.environ.get("HPC_TRAIN_TEMPLATES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "templates"


@lru_cache(maxsize=4)
def environment(directory: str | None = None) -> jinja2.Environment:
    """A cached Jinja environment over the templates folder."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory or str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        finalize=require_filtered,
    )
    env.filters["q"] = shell_quote
    env.filters["sq"] = sbatch_quote
    env.filters["qwords"] = shell_words
    env.filters["envname"] = env_name
    env.filters["defline"] = definition_line
    return env


def render_template(name: str, **context: object) -> str:
    """Render one template with the given context."""
    return environment().get_template(name).render(**context)
