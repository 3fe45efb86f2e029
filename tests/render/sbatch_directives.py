"""How sbatch itself reads `#SBATCH` lines: a port of `_get_argument` and `_opt_batch_script` in
SLURM's src/sbatch/opt.c. Not a fake: these lines are comments to bash, so what matters is what
sbatch makes of them, and sbatch cannot run here without a cluster."""

from __future__ import annotations


def _next_argument(line: str) -> tuple[str | None, str]:
    """One argument and the rest of the line; quotes and backslashes as sbatch treats them."""
    i, n = 0, len(line)
    while i < n and line[i].isspace():
        i += 1
    if i >= n:
        return None, ""
    if line[i] == ":":
        raise ValueError(f"sbatch: unexpected ':' in {line!r}")
    chars: list[str] = []
    quoted, quote, escaped = False, "", False
    while i < n and (quoted or not line[i].isspace()) and line[i] != "\n":
        char = line[i]
        if escaped:
            escaped = False
        elif char == "\\":  # escapes the next character, even inside quotes
            escaped = True
            i += 1
            continue
        elif quoted:
            if char == quote:
                quoted = False
                i += 1
                continue
        elif char in "\"'":
            quoted, quote = True, char
            i += 1
            continue
        elif char == "#":  # an unescaped, unquoted # starts a comment
            break
        chars.append(char)
        i += 1
    if quoted:
        raise ValueError(f"sbatch: unmatched {quote} in {line!r}")
    return ("".join(chars) or None), line[i:]


def sbatch_arguments(script: str) -> list[str]:
    """The options sbatch takes from the script: #SBATCH lines up to the first command line."""
    arguments: list[str] = []
    for line in script.split("\n"):
        if line.startswith("#SBATCH"):
            rest = line[len("#SBATCH"):]
            while True:
                argument, rest = _next_argument(rest)
                if argument is None:
                    break
                arguments.append(argument)
        elif line.strip() and not line.startswith("#"):
            break  # sbatch stops at the first line that is not a comment
    return arguments


def sbatch_options(script: str) -> dict[str, str | None]:
    """`--name=value` arguments as a dict (a flag maps to None); the last one of a name wins."""
    options: dict[str, str | None] = {}
    for argument in sbatch_arguments(script):
        name, sep, value = argument.partition("=")
        options[name] = value if sep else None
    return options
