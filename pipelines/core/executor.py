"""Run items in parallel: serial, joblib (loky processes or threads), Dask or Ray.

Every backend calls the same picklable :func:`execute_task` and yields its result records as they
complete. Results never depend on the backend: seeds come from item keys, and BLAS runs
single-threaded inside every item (a multi-threaded BLAS splits sums differently, which changes
float results in the last bits, and parallelism comes from running items side by side anyway).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import stat
import time
import traceback
import warnings
from typing import Iterator

import numpy as np

from face3d_data.errors import ConfigError, InputError
from pipelines.core.stage import Context, Item, RealPaths, Stage

BACKENDS = ("loky", "threading", "dask", "ray")

_RESOURCES: dict[tuple, object] = {}
_BLAS_PINNED = False


_WATCHING: int | None = None

#: seconds to reach a --scheduler (Dask scheduler or Ray cluster) before giving up with exit 2
SCHEDULER_TIMEOUT_S = float(os.environ.get("FACE3D_SCHEDULER_TIMEOUT", "10"))


def _pin_blas_in_worker() -> None:
    """Limit BLAS/OpenMP pools to one thread for the rest of this worker process (once)."""
    global _BLAS_PINNED
    if not _BLAS_PINNED:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
        _BLAS_PINNED = True


def _watch_parent(pid: int, every_s: float = 0.5) -> None:
    """In a pool worker: exit as soon as the main process ``pid`` is gone (killed with SIGKILL,
    say), instead of lingering until loky's idle timeout. Started once per worker process."""
    global _WATCHING
    if _WATCHING == pid or pid == os.getpid():
        return
    _WATCHING = pid

    def watch():
        while True:
            time.sleep(every_s)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            if os.getppid() == 1 and pid != 1:  # re-parented to init: the runner died
                os._exit(1)

    import threading

    threading.Thread(target=watch, name="face3d-parent-watch", daemon=True).start()


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
    if task.get("parent_pid"):
        _watch_parent(task["parent_pid"])
    stage = load_stage_class(task["stage_class"])()
    cfg = task["cfg"]
    resources = lambda: stage_resources(stage, cfg, task["fingerprint"])  # noqa: E731
    items = [Item(t["key"], t["inputs"]) for t in task["items"]]
    run_seed = int(task["options"].get("seed", 0))
    real = RealPaths()  # the batch's items share their folders: each is resolved once
    ctxs = [Context(stage=stage.name, out_dir=task["out_dir"], run_seed=run_seed,
                    item_seed=t["seed"], rng=np.random.default_rng(t["seed"]), key=t["key"],
                    options=task["options"], _resources=resources,
                    _protected=frozenset(real(p) for p in t["inputs"].values() if isinstance(p, str)),
                    _real=real)
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


#: errors that say the output side (disk, folder) is broken, not the item
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def is_environment_fault(exc: BaseException, out_dir: str) -> bool:
    """A full disk or read-only file system anywhere, or a permission error on the output folder."""
    if not isinstance(exc, OSError):
        return False
    if exc.errno in FATAL_ERRNOS:
        return True
    if exc.errno in (errno.EACCES, errno.EPERM) and exc.filename:
        target = os.path.abspath(os.fsdecode(exc.filename))
        return target == out_dir or target.startswith(out_dir.rstrip(os.sep) + os.sep)
    return False


def _output_state(path: str, real) -> tuple[bool, str]:
    """(``os.path.exists(path)``, ``os.path.realpath(path)``) of a written output, with one
    ``lstat`` where the file is not a symbolic link (``real``: a :class:`RealPaths`)."""
    try:
        link = stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False, real(path)
    if link:
        return os.path.exists(path), os.path.realpath(path)
    return True, real(path, lstat_done=True)


def _record(stage, item: Item, ctx: Context, result, fingerprint: str, seconds: float) -> dict:
    record = {"key": item.key, "inputs": item.inputs, "seed": ctx.item_seed, "fingerprint": fingerprint}
    if not isinstance(result, Exception):
        result = dict(result or {})
        outputs = [str(p) for p in result.pop("outputs", [])]
        real = ctx._real or RealPaths()
        states = [_output_state(os.path.join(ctx.out_dir, p), real) for p in outputs]
        missing = [p for p, (exists, _) in zip(outputs, states) if not exists]
        replaced = [p for p, (_, where) in zip(outputs, states) if where in ctx._protected]
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
        if is_environment_fault(result, ctx.out_dir):
            where = os.fsdecode(result.filename) if result.filename else ctx.out_dir
            record.update(fatal=True, message=f"{where}: {result.strerror or result}")
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


def _pool_flags(task: dict, local: bool) -> dict:
    """``task`` marked for a worker process: BLAS pinned there and, for ``local`` workers (loky's,
    on this machine), the worker exits when this process dies."""
    return dict(task, pin_blas=True, parent_pid=os.getpid()) if local else dict(task, pin_blas=True)


def warm_worker(task: dict) -> int:
    """In a pool worker, before its first batch: pin BLAS, watch the parent, import the stage and
    run its ``setup`` (cached for the batches to come), so that the worker's start-up overlaps
    the main process's own preparation. ``task`` is a task without items. Never raises: a
    failing ``setup`` is reported by the main process's own check (:func:`load_resources_once
    <pipelines.core.runner.load_resources_once>`) or, failing again, by the items. Returns the
    worker's pid."""
    with contextlib.suppress(Exception):
        if task.get("pin_blas"):
            _pin_blas_in_worker()
        if task.get("parent_pid"):
            _watch_parent(task["parent_pid"])
        stage = load_stage_class(task["stage_class"])()
        if type(stage).setup is not Stage.setup:
            stage_resources(stage, task["cfg"], task["fingerprint"])
    return os.getpid()


class Warmup:
    """Worker processes being started ahead of the tasks (see :func:`start_workers`)."""

    def __init__(self, outputs):
        self._outputs = outputs

    def wait(self) -> None:
        """Wait for the warm-up tasks (they run before any task submitted after them); errors are
        left to the tasks, which meet them again."""
        if self._outputs is not None:
            with contextlib.suppress(Exception):
                for _ in self._outputs:
                    pass
            self._outputs = None  # (an interrupt leaves it to cancel)

    def cancel(self) -> None:
        """Stop the warm-up now, killing the workers (an interrupted run); no-op after
        :meth:`wait`."""
        outputs, self._outputs = self._outputs, None
        if outputs is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with contextlib.suppress(Exception):
                    outputs.close()


def start_workers(task: dict, backend: str, jobs: int) -> Warmup | None:
    """For the loky backend with ``jobs`` > 1: start the ``jobs`` worker processes now and have
    each run :func:`warm_worker` on ``task`` (a task of the run, its items not needed), while
    this process goes on preparing the run. :func:`run_tasks` then uses the same workers (loky's
    reusable executor, same size and settings) and waits for the warm-up once its own tasks are
    queued behind it. Returns None where there is nothing to start (other backends, one job)."""
    if backend != "loky" or jobs < 2:
        return None
    from joblib import Parallel, delayed

    warm = _pool_flags({k: v for k, v in task.items() if k != "items"}, local=True)
    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    return Warmup(parallel(delayed(warm_worker)(warm) for _ in range(jobs)))


@contextlib.contextmanager
def warm_workers(task: dict | None, backend: str, jobs: int):
    """:func:`start_workers` for the block (``task`` None: nothing to start), yielding the
    :class:`Warmup` or None. A block that fails before :func:`run_tasks` waited for the warm-up
    waits for it too (it ends as soon as each worker has imported the stage and tried ``setup``),
    leaving the workers idle and reusable; an interrupt (KeyboardInterrupt...) kills them."""
    warmup = start_workers(task, backend, jobs) if task is not None else None
    try:
        yield warmup
    except Exception:
        if warmup is not None:
            warmup.wait()
        raise
    except BaseException:
        if warmup is not None:
            warmup.cancel()
        raise
    if warmup is not None:
        warmup.wait()


def run_tasks(tasks: list[dict], backend: str, jobs: int, scheduler: str | None,
              warmup: Warmup | None = None) -> Iterator[list[dict]]:
    """Yield each task's result records (a list per task) as tasks complete. ``warmup``: the
    loky workers :func:`start_workers` started for these tasks."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not tasks:
        return iter(())
    if backend == "threading" or (backend == "loky" and jobs == 1):
        return _run_in_process(tasks, jobs)
    # worker processes pin their own BLAS pools; loky's exit when this process dies
    tasks = [_pool_flags(t, local=backend == "loky") for t in tasks]
    if backend == "dask":
        return _run_dask(tasks, jobs, scheduler)
    if backend == "ray":
        return _run_ray(tasks, jobs, scheduler)
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    outputs = parallel(delayed(execute_task)(t) for t in tasks)  # the first tasks are queued now
    if warmup is not None:
        warmup.wait()
    return iter(outputs)


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


def parse_address(address: str, default_scheme: str = "tcp") -> tuple[str, str, int]:
    """``[scheme://]host:port`` -> (scheme, host, port); raise ConfigError when malformed."""
    text = address.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = default_scheme, text
    host, colon, port = rest.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in rest:
        raise ConfigError(f"--scheduler {address!r}: expected [{default_scheme}://]HOST:PORT")
    return scheme, host, int(port)


def check_reachable(address: str, what: str, default_scheme: str = "tcp",
                    timeout: float | None = None) -> None:
    """Fail fast (ConfigError) when nothing listens at ``address`` within ``timeout`` seconds."""
    import socket

    _, host, port = parse_address(address, default_scheme)
    timeout = SCHEDULER_TIMEOUT_S if timeout is None else timeout
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise ConfigError(f"--scheduler {address}: cannot reach the {what} within {timeout:g} s "
                          f"({reason})") from None


def check_scheduler(backend: str, scheduler: str | None) -> None:
    """Before any work: a ``--scheduler`` address must be well formed and reachable within
    :data:`SCHEDULER_TIMEOUT_S` seconds (``FACE3D_SCHEDULER_TIMEOUT``), else ConfigError."""
    if not scheduler:
        return
    if backend == "dask":
        scheme = scheduler.partition("://")[0] if "://" in scheduler else "tcp"
        if scheme in ("tcp", "tls"):
            check_reachable(scheduler, "Dask scheduler")
        elif scheme not in ("inproc", "ucx", "ws", "wss"):
            raise ConfigError(f"--scheduler {scheduler!r}: unknown Dask address scheme {scheme!r}")
    elif backend == "ray" and scheduler != "auto":
        scheme = scheduler.partition("://")[0] if "://" in scheduler else "ray"
        if scheme not in ("ray", "tcp"):
            raise ConfigError(f"--scheduler {scheduler!r}: expected [ray://]HOST:PORT or auto")
        check_reachable(scheduler, "Ray cluster", default_scheme="ray")


def _within(connect, scheduler: str, what: str):
    """``connect()`` with a hard deadline of SCHEDULER_TIMEOUT_S (+1 s): client libraries can wait
    forever on a peer that accepts the connection but never answers. Any failure is a ConfigError."""
    import threading

    result: dict = {}

    def attempt():
        try:
            result["value"] = connect()
        except BaseException as exc:  # noqa: B036 - reported below
            result["error"] = exc

    thread = threading.Thread(target=attempt, name="face3d-connect", daemon=True)
    thread.start()
    thread.join(SCHEDULER_TIMEOUT_S + 1.0)
    if "value" in result:
        return result["value"]
    exc = result.get("error")
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "no answer"
    raise ConfigError(f"--scheduler {scheduler}: cannot connect to the {what} within "
                      f"{SCHEDULER_TIMEOUT_S:g} s ({reason})")


def _run_dask(tasks: list[dict], jobs: int, scheduler: str | None) -> Iterator[list[dict]]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--backend dask needs Dask: pip install 'face3d-data[dask]'") from None
    with contextlib.ExitStack() as stack:
        if scheduler:
            client = stack.enter_context(_within(
                lambda: Client(scheduler, timeout=SCHEDULER_TIMEOUT_S), scheduler, "Dask scheduler"))
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
        init = lambda: ray.init(address=scheduler, num_cpus=None if scheduler else jobs,  # noqa: E731
                                log_to_driver=False)
        if scheduler:
            _within(init, scheduler, "Ray cluster")
        else:
            init()
    try:
        remote = ray.remote(execute_task)
        pending = [remote.remote(t) for t in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
