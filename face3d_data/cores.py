"""How many CPU cores this process may use: the one definition of "all cores".

The stage runner's ``--jobs 0`` and the render kernels' ``num_threads=None`` both mean this.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """The number of cores this process may run on (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
