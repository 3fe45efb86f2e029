"""bench/RESULTS.md: each benchmark owns one `## ` section and rewrites only that one."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, section: str) -> None:
    """Replace (or append) the section whose heading is `section`'s first line, leaving the others alone."""
    heading = section.splitlines()[0].strip()
    if not heading.startswith("## "):
        raise ValueError(f"a RESULTS.md section starts with a '## ' heading, got {heading!r}")
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    body = section.rstrip("\n") + "\n"
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        path.write_text(text.rstrip("\n") + "\n\n" + body)
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    path.write_text("".join(lines[:start]) + body + ("\n" + tail if tail else ""))
