"""Model factories that end-to-end tests name in specs (`model.type: tests.cli.fixtures:broken`)."""

from __future__ import annotations

from typing import Any

BROKEN_MESSAGE = "this model factory is broken on purpose"


def broken(*args: Any, **kwargs: Any) -> Any:
    """A user's model factory with a bug: the job must fail and show this traceback."""
    raise RuntimeError(BROKEN_MESSAGE)
