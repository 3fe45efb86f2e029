"""Shell safety for templates: every value that reaches a rendered script passes a quoting filter.

The Jinja environment's `finalize` refuses any expression result that did not go through one of
these filters, so a template cannot leak an unquoted spec value by accident.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from hpc_train.errors import UserError

# used with fullmatch: `$` would also match before a final newline
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_WORD = re.compile(r"[\w@%+=:,./-]+", re.ASCII)


class ShellSafe(str):
    """A string already made safe for its place in a rendered file."""


def shell_quote(value: Any) -> ShellSafe:
    """Quote one word for POSIX sh; numbers and plain words stay readable."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"refusing to render {value!r} into a shell script")
    return ShellSafe(shlex.quote(str(value)))


def shell_words(values: Any) -> ShellSafe:
    """Quote each word of an argv list and join them with spaces."""
    return ShellSafe(" ".join(shell_quote(value) for value in values))


def sbatch_quote(value: Any) -> ShellSafe:
    """Quote one word of an `#SBATCH` line the way sbatch reads it (not the way a shell would).

    sbatch splits directive lines itself: a backslash escapes the next character even inside
    quotes, and a line ends the directive. So: double quotes, backslash-escaped `\\` and `"`.
    """
    if isinstance(value, bool) or value is None:
        raise TypeError(f"refusing to render {value!r} into an #SBATCH line")
    text = str(value)
    if "\n" in text or "\r" in text:
        raise UserError(f"a value on an #SBATCH line cannot contain a newline: {text!r}")
    if _PLAIN_WORD.fullmatch(text):
        return ShellSafe(text)
    return ShellSafe('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def env_name(value: Any) -> ShellSafe:
    """An environment variable name, checked rather than quoted (names cannot be quoted)."""
    text = str(value)
    if not _ENV_NAME.fullmatch(text):
        raise ValueError(f"not a valid environment variable name: {text!r}")
    return ShellSafe(text)


def definition_line(value: Any) -> ShellSafe:
    """A value for a one-line field of an Apptainer definition header (no newlines allowed)."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"a definition field cannot contain a newline: {text!r}")
    return ShellSafe(text)


def require_filtered(value: Any) -> Any:
    """Jinja finalize hook: only filtered strings (and numbers) may be written into a template."""
    if isinstance(value, ShellSafe) or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if value is None or value == "":
        return value if value == "" else ""
    raise TypeError(f"template wrote {value!r} without a quoting filter (| q)")
