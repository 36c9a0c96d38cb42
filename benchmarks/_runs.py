"""End-to-end timing of a stage through the runner, shared by the stage benchmarks.

Two figures per stage:

- **with start-up**: a cold run, as a user's first command sees it: fresh worker processes (they
  import the stage and load its resources, e.g. a 145 MB model) and this process loading its own;
- **steady**: the rate a long run settles at, (N - n) / (t_N - t_n) from two warm runs of N and n
  items (the same loky workers, resources already loaded in every process), so that start-up,
  model loading and ``finish`` cancel out; what the 122,450-sample 300W-LP sees after its first
  seconds.

On a VM whose host backs guest memory lazily, writing into new page-cache pages costs several
times writing into pages the kernel has just freed (:func:`page_cache_cost`); the steady rate is
measured both ways (:func:`end_to_end`).
"""

from __future__ import annotations

import os
import time


def cold_start() -> None:
    """Shut the reusable loky pool and forget this process's cached stage resources: the next run
    starts its workers and loads everything again."""
    from joblib.externals.loky import get_reusable_executor

    from pipelines.core import executor

    get_reusable_executor().shutdown(wait=True)
    executor._RESOURCES.clear()


def timed_run(stage: str, explicit: dict, out: str, jobs: int, limit: int | None = None) -> tuple[float, int]:
    """Run ``stage`` through :func:`pipelines.core.run_stage`; returns (seconds, items processed)."""
    from pipelines.core import RunOptions, build_config, run_stage
    from pipelines.registry import stage_class

    cfg = build_config(stage, explicit=explicit)
    start = time.perf_counter()
    summary = run_stage(stage_class(stage), RunOptions(out=out, jobs=jobs, quiet=True, limit=limit), cfg=cfg)
    return time.perf_counter() - start, summary.processed


def end_to_end(stage: str, explicit: dict, out: str, jobs: int, small: int) -> dict:
    """A cold run of every item, then two pairs of warm runs (every item, the first ``small``).

    The first pair writes into new page-cache pages like the cold run; the second runs right after
    deleting an earlier run's output of at least its size, so its files land in pages the kernel
    has just freed, as in a run that writes more than the machine's free memory (300W-LP's
    position maps are ~100 GB) once the page cache is full.

    Returns (seconds, items) for ``cold``, ``warm``, ``warm_small``, ``recycled``,
    ``recycled_small``, and the rates ``steady`` and ``steady_recycled`` (items/s).
    """
    import shutil

    cold_start()
    runs = {"cold": timed_run(stage, explicit, out + "_cold", jobs)}
    runs["warm"] = timed_run(stage, explicit, out + "_warm", jobs)
    runs["warm_small"] = timed_run(stage, explicit, out + "_warm_small", jobs, limit=small)
    shutil.rmtree(out + "_cold")
    runs["recycled"] = timed_run(stage, explicit, out + "_recycled", jobs)
    shutil.rmtree(out + "_warm")
    runs["recycled_small"] = timed_run(stage, explicit, out + "_recycled_small", jobs, limit=small)
    for name, (big, little) in {"steady": ("warm", "warm_small"),
                                "steady_recycled": ("recycled", "recycled_small")}.items():
        (t_big, n_big), (t_little, n_little) = runs[big], runs[little]
        runs[name] = (n_big - n_little) / max(1e-9, t_big - t_little)
    return runs


def page_cache_cost(folder: str, nbytes: int, files: int = 200) -> tuple[float, float]:
    """ms per file to write ``files`` files of ``nbytes`` each into a fresh folder (new page-cache
    pages), then again over the same names right after deleting them (pages the kernel just
    freed, recycled). On a VM whose host backs guest memory lazily, the first is many times the
    second; a run that writes more than the machine's free memory mostly sees the second."""
    data = os.urandom(nbytes)

    def write_all() -> float:
        os.makedirs(folder, exist_ok=True)
        start = time.perf_counter()
        for i in range(files):
            fd = os.open(os.path.join(folder, f"{i}.bin"), os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return 1e3 * (time.perf_counter() - start) / files

    fresh = write_all()
    for i in range(files):
        os.unlink(os.path.join(folder, f"{i}.bin"))
    recycled = write_all()
    for i in range(files):
        os.unlink(os.path.join(folder, f"{i}.bin"))
    return fresh, recycled
