"""What a plot test checks of a PNG: it decodes, has the size asked for, and is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread

MIN_COLOURS = 10  # an empty white canvas with a few grey frames stays below this


def assert_png(path: Path, width: int, height: int) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width), f"{path}: {pixels.shape[1]}x{pixels.shape[0]} pixels"
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) > MIN_COLOURS, f"{path} looks blank ({len(colours)} distinct colours)"
