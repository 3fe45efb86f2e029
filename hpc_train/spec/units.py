"""Parsing of the units people write in job specs: memory sizes and wall-clock times."""

from __future__ import annotations

import re

_MEMORY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", re.IGNORECASE)
_MEMORY_FACTOR_MB = {"K": 1 / 1024, "M": 1, "": 1, "G": 1024, "T": 1024 * 1024}

_TIME_DHMS = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?")

MEMORY_FORMS = "an integer of megabytes or a size like 8GB, 8G, 8192M, 512MB, 1TB"
TIME_FORMS = "minutes (e.g. 90), HH:MM:SS, D-HH:MM:SS, D-HH or MM:SS"


def parse_memory_mb(value: object) -> int:
    """'8GB' | '8G' | '8192M' | 8192 -> megabytes. Raises ValueError on anything else."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size, not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("memory must be positive")
        return value
    if not isinstance(value, str):
        raise ValueError(f"memory must be {MEMORY_FORMS}")
    match = _MEMORY.fullmatch(value)
    if not match:
        raise ValueError(f"memory must be {MEMORY_FORMS}")
    megabytes = float(match.group(1)) * _MEMORY_FACTOR_MB[match.group(2).upper()]
    if megabytes < 1:
        raise ValueError("memory must be at least 1 MB")
    return round(megabytes)


def parse_time_seconds(value: object) -> int:
    """SLURM time forms -> seconds: 90 (minutes), 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS'."""
    if isinstance(value, bool):
        raise ValueError("time must be a duration, not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("time must be positive")
        return value * 60
    if not isinstance(value, str):
        raise ValueError(f"time must be {TIME_FORMS}")
    text = value.strip()
    match = _TIME_DHMS.fullmatch(text)
    if not match:
        raise ValueError(f"time must be {TIME_FORMS}")
    days, first, second, third = match.groups()
    if days is not None:
        # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = int(days) * 86400 + int(first) * 3600 + int(second or 0) * 60 + int(third or 0)
    elif third is not None:
        seconds = int(first) * 3600 + int(second) * 60 + int(third)  # HH:MM:SS
    elif second is not None:
        seconds = int(first) * 60 + int(second)  # MM:SS
    else:
        seconds = int(first) * 60  # minutes
    if (second is not None and int(second) >= 60) or (third is not None and int(third) >= 60):
        raise ValueError(f"time has minutes or seconds >= 60; use {TIME_FORMS}")
    if seconds <= 0:
        raise ValueError("time must be positive")
    return seconds


def format_slurm_time(seconds: int) -> str:
    """Seconds -> 'D-HH:MM:SS', the form sbatch always accepts."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
