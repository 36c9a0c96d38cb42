"""What a benchmark figure depends on, printed with it: BLAS kernel and threads, cores, load.

Every script in ``benchmarks/`` calls :func:`print_machine` before its figures, so a number in the
README or an issue can be read against the machine it came from (``OPENBLAS_CORETYPE`` set or not,
the OpenBLAS kernel actually selected, how many threads each pool had, how busy the machine was).
"""

from __future__ import annotations

import os
import platform


def blas_pools() -> list[dict]:
    """The thread pools numpy/scipy/torch loaded: one dict per pool (api, library, kernel, threads)."""
    from threadpoolctl import threadpool_info

    pools = []
    for info in threadpool_info():
        pools.append({
            "api": info.get("user_api"),
            "library": info.get("internal_api"),
            "version": info.get("version"),
            "kernel": info.get("architecture"),
            "threads": info.get("num_threads"),
        })
    return pools


def machine_line() -> str:
    """One line: cores, load average, BLAS kernel(s) and thread counts, OPENBLAS_CORETYPE."""
    import numpy  # noqa: F401  (loads the BLAS numpy links, so threadpoolctl can see it)

    pools = ", ".join(
        f"{p['library']} {p['version'] or ''} kernel={p['kernel'] or '-'} threads={p['threads']}"
        for p in blas_pools()
    ) or "no BLAS pool found"
    coretype = os.environ.get("OPENBLAS_CORETYPE", "unset")
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f}; OPENBLAS_CORETYPE={coretype}; pools: {pools}")


def print_machine() -> None:
    """Print :func:`machine_line` (call once at the start of a benchmark)."""
    print(machine_line(), flush=True)


if __name__ == "__main__":
    print_machine()
