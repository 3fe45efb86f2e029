"""The Jinja environment for hpc-train's templates: StrictUndefined, quoting filters, no autoescape."""

from __future__ import annotations

import os
from functools import lru_cache

import jinja2

from hpc_train.package_data import templates
from hpc_train.render.shell import (
    definition_line,
    env_name,
    require_filtered,
    sbatch_quote,
    shell_quote,
    shell_words,
)


def _packaged_template(name: str) -> str | None:
    source = templates() / name
    return source.read_text(encoding="utf-8") if source.is_file() else None  # None: TemplateNotFound


def template_loader(directory: str | None = None) -> jinja2.BaseLoader:
    """DIRECTORY, else $HPC_TRAIN_TEMPLATES, else the templates shipped inside the package."""
    override = directory or os.environ.get("HPC_TRAIN_TEMPLATES")
    if override:
        return jinja2.FileSystemLoader(override)
    return jinja2.FunctionLoader(_packaged_template)


@lru_cache(maxsize=4)
def environment(directory: str | None = None) -> jinja2.Environment:
    """A cached Jinja environment over the templates folder."""
    env = jinja2.Environment(
        loader=template_loader(directory),
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
