"""Run items in parallel: serial, joblib (loky processes or threads), Dask or Ray.

Every backend calls the same picklable :func:`execute_task` and yields its result records as they
complete. Results never depend on the backend: seeds come from item keys, and BLAS runs
single-threaded inside every item (a multi-threaded BLAS splits sums differently, which changes
float results in the last bits, and parallelism comes from running items side by side anyway).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
import traceback
from typing import Iterator

import numpy as np

from face3d_data.errors import ConfigError, InputError
from pipelines.core.stage import Context, Item

BACKENDS = ("loky", "threading", "dask", "ray")

_RESOURCES: dict[tuple, object] = {}
_BLAS_PINNED = False


def _pin_blas_in_worker() -> None:
    """Limit BLAS/OpenMP pools to one thread for the rest of this worker process (once)."""
    global _BLAS_PINNED
    if not _BLAS_PINNED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _BLAS_PINNED = True


def available_cores() -> int:
    """The number of cores this process may run on (its CPU affinity, else the machine's count).

    The one definition of "all cores" used by the runner (``--jobs 0``, the cap on ``--jobs``).
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def load_stage_class(path: str):
    """Import ``"package.module:ClassName"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def stage_resources(stage, cfg: dict, fingerprint: str):
    """``stage.setup(cfg)``, computed once per process and configuration."""
    key = (type(stage).__module__, type(stage).__qualname__, fingerprint)
    if key not in _RESOURCES:
        _RESOURCES[key] = stage.setup(cfg)
    return _RESOURCES[key]


def execute_task(task: dict) -> list[dict]:
    """Process one batch of items (usually one); never raises for a bad item.

    ``task`` holds: ``stage_class`` ("module:Class"), ``cfg``, ``fingerprint``, ``out_dir``,
    ``options`` and ``items`` (each with ``key``, ``inputs``, ``seed``). Returns one record per
    item: ``status`` "ok" with its ``outputs`` and the stage's columns, or "failed" with
    ``error_class`` and ``message``.
    """
    if task.get("pin_blas"):
        _pin_blas_in_worker()
    stage = load_stage_class(task["stage_class"])()
    cfg = task["cfg"]
    resources = lambda: stage_resources(stage, cfg, task["fingerprint"])  # noqa: E731
    items = [Item(t["key"], t["inputs"]) for t in task["items"]]
    run_seed = int(task["options"].get("seed", 0))
    ctxs = [Context(stage=stage.name, out_dir=task["out_dir"], run_seed=run_seed,
                    item_seed=t["seed"], rng=np.random.default_rng(t["seed"]), key=t["key"],
                    options=task["options"], _resources=resources,
                    _protected=frozenset(os.path.realpath(p) for p in t["inputs"].values()
                                         if isinstance(p, str)))
            for t in task["items"]]
    start = time.perf_counter()
    try:
        results = stage.process_batch(items, cfg, ctxs)
        if len(results) != len(items):
            raise RuntimeError(f"stage {stage.name}: process_batch returned {len(results)} "
                               f"results for {len(items)} items")
    except Exception as exc:  # the whole batch failed: every item reports it
        results = [exc] * len(items)
    seconds = round((time.perf_counter() - start) / max(1, len(items)), 6)
    return [_record(stage, item, ctx, result, t["fingerprint"], seconds)
            for item, ctx, result, t in zip(items, ctxs, results, task["items"])]


def _record(stage, item: Item, ctx: Context, result, fingerprint: str, seconds: float) -> dict:
    record = {"key": item.key, "inputs": item.inputs, "seed": ctx.item_seed, "fingerprint": fingerprint}
    if not isinstance(result, Exception):
        result = dict(result or {})
        outputs = [str(p) for p in result.pop("outputs", [])]
        missing = [p for p in outputs if not os.path.exists(os.path.join(ctx.out_dir, p))]
        replaced = [p for p in outputs if os.path.realpath(os.path.join(ctx.out_dir, p)) in ctx._protected]
        if replaced:
            result = InputError(os.path.join(ctx.out_dir, replaced[0]),
                                "an output of this item replaced its input file")
        elif missing:
            result = RuntimeError(f"stage {stage.name} reported outputs it did not write: {missing[:3]}")
        else:
            record.update(result)
            record.update(status="ok", outputs=outputs)
    if isinstance(result, Exception):
        record.update(status="failed", outputs=[], error_class=type(result).__name__,
                      message=_message(result, item))
    record["seconds"] = seconds
    return record


def _message(exc: Exception, item: Item) -> str:
    """A one-line message naming the file: InputError already does; others get the inputs and
    the innermost frame of the traceback so a bug can be found."""
    if isinstance(exc, InputError):
        return str(exc)
    inputs = ", ".join(str(v) for v in item.inputs.values()) or item.key
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {os.path.basename(frame.filename)}:{frame.lineno})" if frame else ""
    return f"{inputs}: {type(exc).__name__}: {exc}{where}"


def run_tasks(tasks: list[dict], backend: str, jobs: int, scheduler: str | None) -> Iterator[list[dict]]:
    """Yield each task's result records (a list per task) as tasks complete."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not tasks:
        return iter(())
    if backend == "threading" or (backend == "loky" and jobs == 1):
        return _run_in_process(tasks, jobs)
    for task in tasks:  # worker processes pin their own BLAS pools
        task["pin_blas"] = True
    if backend == "dask":
        return _run_dask(tasks, jobs, scheduler)
    if backend == "ray":
        return _run_ray(tasks, jobs, scheduler)
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    return iter(parallel(delayed(execute_task)(t) for t in tasks))


def _run_in_process(tasks: list[dict], jobs: int) -> Iterator[list[dict]]:
    """Serial or thread-pool execution in this process, with BLAS single-threaded meanwhile."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        if jobs == 1:
            yield from map(execute_task, tasks)
            return
        from joblib import Parallel, delayed

        parallel = Parallel(n_jobs=jobs, backend="threading", return_as="generator_unordered")
        yield from parallel(delayed(execute_task)(t) for t in tasks)


def _run_dask(tasks: list[dict], jobs: int, scheduler: str | None) -> Iterator[list[dict]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--backend dask needs Dask: pip install 'face3d-data[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(Client(scheduler))
        else:
            cluster = stack.enter_context(LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=40))
            client = stack.enter_context(Client(cluster))
        futures = client.map(execute_task, tasks, pure=False)
        for future in as_completed(futures):
            yield future.result()


def _run_ray(tasks: list[dict], jobs: int, scheduler: str | None) -> Iterator[list[dict]]:
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'face3d-data[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=scheduler, num_cpus=None if scheduler else jobs, log_to_driver=False)
    try:
        remote = ray.remote(execute_task)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()

