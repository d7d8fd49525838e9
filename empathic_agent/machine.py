"""The machine facts every benchmark reports beside its figures.

Wall-clock figures depend on the cores a process may use and on what else runs on them, so each
benchmark's JSON carries the same ``machine`` block (one place, one set of keys): the cores of this
process's affinity, the platform, the Python version and the 1-minute load average.
"""

from __future__ import annotations

import os
import platform
from typing import Any

__all__ = ["cpu_count", "load_average", "machine_info"]


def cpu_count() -> int:
    """The cores this process may run on (its affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 0


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return float("nan")


def machine_info() -> dict[str, Any]:
    """What a benchmark says about where it ran: other processes on the same cores inflate every
    figure, so the load is reported beside the cores."""
    return {"cpu_count": cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "load_average_1m": round(load_average(), 2)}
