"""Run one stage over its items: the programmatic API behind ``python -m pipelines.run``.

``run_stage`` lists the items, keeps this shard's share, skips items already complete (resume),
processes the rest in parallel, records every result in the journal, then writes the manifest,
``failures.csv``, ``preview.png`` and prints a summary.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np
import pandas  # noqa: F401 - the manifest writer's (imported lazily there, so workers skip it); loaded up front here

from face3d_data.cores import available_cores
from face3d_data.errors import ConfigError, InputError
from face3d_data.io import write_image
from face3d_data.io.atomic import stale_temporaries
from face3d_data.viz import contact_sheet
from pipelines.core.config import as_options, build_config, config_hash, plain_config
from pipelines.core.executor import run_tasks, stage_resources, warm_workers
from pipelines.core.fingerprint import AssetHasher, item_fingerprint, run_fingerprint
from pipelines.core.journal import Journal, is_complete, load_all, locked
from pipelines.core.manifest import printable, run_metadata, write_failures, write_manifest
from pipelines.core.seeding import in_shard, item_seed
from pipelines.core.stage import Context, Stage

STATE_DIR = ".face3d"


class EnvironmentFault(ConfigError):
    """The machine, not an item, is at fault (disk full, read-only folder): the run stops at once
    with one message (exit 2) instead of failing every remaining item."""


@dataclasses.dataclass
class RunOptions:
    """Runner options shared by every stage (see ``python -m pipelines.run STAGE --help``)."""

    out: str
    jobs: int = 0                      # 0 = all cores
    backend: str = "loky"
    scheduler: str | None = None
    shard: tuple[int, int] = (0, 1)
    limit: int | None = None
    overwrite: bool = False
    seed: int = 0
    quiet: bool = False


@dataclasses.dataclass
class RunSummary:
    """What a run did. ``exit_code``: 0 all good, 3 some items failed."""

    stage: str
    out_dir: str
    total: int
    processed: int
    skipped: int
    failed: int
    seconds: float
    manifest: str | None
    failures: str | None
    preview: str | None
    records: list[dict]

    @property
    def exit_code(self) -> int:
        return 3 if self.failed else 0


def _suffix(shard: tuple[int, int]) -> str:
    return "" if shard[1] == 1 else f".shard-{shard[0]}-of-{shard[1]}"


def run_stage(stage: Stage | type, options: RunOptions, cfg: dict | None = None,
              config_file: str | None = None, sets: list[str] | None = None,
              explicit: dict | None = None) -> RunSummary:
    """Run ``stage`` with the given options.

    Args:
        stage: a Stage subclass or instance (its module must be importable by worker processes).
        options: runner options.
        cfg: a complete configuration; when omitted it is built from ``pipelines/configs/<stage>.yaml``,
            ``config_file``, ``sets`` and ``explicit`` (see :func:`pipelines.core.config.build_config`).

    Raises:
        ConfigError: bad options (the CLI turns it into exit status 2).
    """
    stage = stage() if isinstance(stage, type) else stage
    check_run_options(options)
    cfg = build_config(stage, config_file, sets, explicit) if cfg is None else as_options(stage, cfg)
    stage.check_config(cfg)
    if not options.out:
        raise ConfigError(f"{stage.name}: --out is required")
    out_dir = os.path.abspath(options.out)
    check_out_apart(stage, cfg, out_dir)
    state_dir = os.path.join(out_dir, STATE_DIR)
    hasher = AssetHasher(os.path.join(state_dir, "asset-hashes.json"))
    run_fp = run_fingerprint(config_hash(cfg, options.seed), stage, cfg, hasher)
    runner_options = {"jobs": options.jobs, "backend": options.backend, "shard": list(options.shard),
                      "limit": options.limit, "seed": options.seed}
    base_ctx = Context(stage=stage.name, out_dir=out_dir, run_seed=options.seed,
                       rng=np.random.default_rng(options.seed), options=runner_options,
                       _resources=lambda: stage_resources(stage, cfg, run_fp))
    started = time.perf_counter()
    items = sorted(stage.list_items(cfg, base_ctx), key=lambda it: it.key)
    keys = [it.key for it in items]
    if len(set(keys)) != len(keys):
        dupes = sorted({k for k in keys if keys.count(k) > 1})[:5]
        raise ConfigError(f"{stage.name}: duplicate item keys {dupes}")
    check_items_apart(stage, items, out_dir)
    if options.limit is not None:
        items = items[:options.limit]
    fingerprints = {it.key: item_fingerprint(run_fp, it.inputs) for it in items}
    size = max(1, int(stage.batch_size))
    index, count = options.shard
    batches = [batch for batch in (items[i:i + size] for i in range(0, len(items), size))
               if in_shard(batch[0].key, index, count)]
    shard_items = [it for batch in batches for it in batch]

    suffix = _suffix(options.shard)
    journal = Journal(os.path.join(state_dir, f"{stage.name}{suffix}.journal.jsonl"))
    previous = {} if options.overwrite else load_all(state_dir, stage.name, own=journal.path)
    done = {it.key: previous[it.key] for it in shard_items
            if is_complete(previous.get(it.key), fingerprints[it.key], out_dir)}
    # A batch with any unfinished item is redone whole, so its composition (and bytes) never change.
    pending = [batch for batch in batches if any(it.key not in done for it in batch)]
    for batch in pending:
        for it in batch:
            done.pop(it.key, None)
    stage_class = f"{type(stage).__module__}:{type(stage).__qualname__}"
    tasks = [{"stage_class": stage_class, "cfg": cfg, "fingerprint": run_fp,
              "out_dir": out_dir, "options": runner_options,
              "items": [{"key": it.key, "inputs": dict(it.inputs), "fingerprint": fingerprints[it.key],
                         "seed": item_seed(options.seed, stage.name, it.key)} for it in batch]}
             for batch in pending]
    n_pending = sum(len(batch) for batch in pending)
    jobs = effective_jobs(options, len(tasks))
    runner_options["jobs"] = jobs

    records = dict(done)
    failures: list[dict] = []
    # Worker processes start (importing the stage, loading its resources) while this process
    # loads its own copy and prepares the folder; no task is queued before that has succeeded.
    with warm_workers(tasks[0] if tasks else None, options.backend, jobs) as warmup:
        load_resources_once(stage, cfg, run_fp)
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{stage.name}: cannot create --out {out_dir}: {exc.strerror}") from None
        check_writable(out_dir)
        remove_stale_temporaries(out_dir)
        journal.open(truncate=options.overwrite)
        bar = _progress(stage.name, n_pending, options.quiet)
        try:
            results = run_tasks(tasks, options.backend, jobs, options.scheduler, warmup=warmup)
            for batch_records in results:
                for record in batch_records:
                    if record["status"] == "ok":
                        journal.append(record)
                        records[record["key"]] = record
                    elif record.get("fatal"):
                        _stop(results)
                        raise EnvironmentFault(f"{stage.name}: {record['message']} — stopped; items "
                                               f"completed so far are kept, rerun to resume")
                    else:
                        failures.append(record)
                if bar is not None:
                    bar.update(len(batch_records))
                    if failures:
                        bar.set_postfix(failed=len(failures))
        finally:
            journal.close()
            if bar is not None:
                bar.close()
    hasher.save()

    own_records = [records[k] for k in sorted(records)]
    # The manifest first: it records this shard's items even if finish() fails.
    metadata = run_metadata(stage.name, plain_config(cfg), runner_options, run_fp)
    manifest = write_manifest(out_dir, f"manifest{suffix}", own_records + failures, metadata) \
        if (own_records or failures) else None
    failures_path = os.path.join(out_dir, f"failures{suffix}.csv")
    write_failures(failures_path, stage.name, failures)
    # Whatever is derived from all items (datalists, labels, splits, stats, preview) is rebuilt
    # from the records of every shard found in this folder, under a lock: the shard that finishes
    # last writes the complete set, equal to a single run's.
    with locked(os.path.join(state_dir, f"{stage.name}.finish.lock")):
        merged = load_all(state_dir, stage.name, own=journal.path)
        merged.update(records)
        all_records = [merged[it.key] for it in items
                       if it.key in records or is_complete(merged.get(it.key), fingerprints[it.key], out_dir)]
        stage.finish(cfg, base_ctx, all_records)
        preview = _write_preview(stage, cfg, base_ctx, all_records)
    summary = RunSummary(stage=stage.name, out_dir=out_dir, total=len(shard_items),
                         processed=n_pending - len(failures), skipped=len(done),
                         failed=len(failures), seconds=time.perf_counter() - started,
                         manifest=manifest, failures=failures_path if failures else None,
                         preview=preview, records=own_records + failures)
    if not options.quiet:
        print_summary(summary, jobs, options.backend)
    return summary


def _stop(results) -> None:
    """Cancel the remaining tasks (quietly: joblib warns about cancelled tasks)."""
    import warnings

    close = getattr(results, "close", None)
    if close is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            close()


def check_run_options(options: RunOptions) -> None:
    """Reject runner options that cannot mean anything (exit 2 from the CLI)."""
    from pipelines.core.executor import BACKENDS, check_scheduler

    for name, value, low in (("--seed", options.seed, 0), ("--jobs", options.jobs, 0),
                             ("--limit", options.limit, 0)):
        if value is None and name == "--limit":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            hint = " (0 = all cores)" if name == "--jobs" else ""
            raise ConfigError(f"{name} must be an integer >= {low}{hint}, got {value!r}")
    if options.seed >= 2 ** 63:
        raise ConfigError(f"--seed must be below 2**63, got {options.seed}")
    if options.backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {options.backend!r}")
    if options.scheduler is not None and options.backend not in ("dask", "ray"):
        raise ConfigError(f"--scheduler needs --backend dask or ray (got --backend {options.backend})")
    check_scheduler(options.backend, options.scheduler)


def effective_jobs(options: RunOptions, n_tasks: int) -> int:
    """``--jobs`` (0 = all cores) capped by the pending batches and, on this machine, the cores."""
    jobs = options.jobs or available_cores()
    if not (options.scheduler and options.backend in ("dask", "ray")):
        jobs = min(jobs, available_cores())
    return max(1, min(jobs, n_tasks))


def load_resources_once(stage: Stage, cfg, fingerprint: str) -> None:
    """Run ``stage.setup(cfg)`` in this process before any item, so a bad model or asset is one
    clear error (exit 2) instead of a failure row per item.

    Raises:
        ConfigError: whatever setup raised, as one line naming the stage.
    """
    if type(stage).setup is Stage.setup:
        return
    try:
        stage_resources(stage, cfg, fingerprint)
    except (ConfigError, InputError):
        raise
    except MemoryError:
        raise
    except Exception as exc:
        raise ConfigError(f"{stage.name}: cannot load the stage's resources: "
                          f"{type(exc).__name__}: {exc}") from None


def check_writable(out_dir: str) -> None:
    """Refuse (exit 2) an output folder this process cannot write into."""
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out_dir}: the folder is not writable")


def remove_stale_temporaries(out_dir: str) -> int:
    """Delete the atomic writer's temporary files left in ``out_dir`` by a killed run (their
    writer process is gone; see :func:`face3d_data.io.atomic.stale_temporaries`); files of a
    writer still running, e.g. another shard, are kept. Returns how many were removed."""
    removed = 0
    for path in stale_temporaries(out_dir):
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed


def _real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _relation(out: str, path: str) -> str | None:
    """How folder ``out`` overlaps ``path``: "is", "is inside", "contains" or None (real paths)."""
    if out == path:
        return "is"
    if out.startswith(path.rstrip(os.sep) + os.sep):
        return "is inside"
    if path.startswith(out.rstrip(os.sep) + os.sep):
        return "contains"
    return None


def check_out_apart(stage: Stage, cfg, out_dir: str) -> None:
    """Refuse an output folder that is, contains or lies inside an input folder/file of the run
    (``stage.input_paths(cfg)``), unless the stage writes only new names beside its inputs by
    design (``writes_beside_inputs``). Also refuse a folder that holds another stage's run.

    Raises:
        ConfigError: naming the option/path and the overlap.
    """
    out = _real(out_dir)
    if not stage.writes_beside_inputs:
        for path in stage.input_paths(cfg):
            relation = _relation(out, _real(path))
            if relation:
                raise ConfigError(f"{stage.name}: --out {out_dir} {relation} the input {path}; "
                                  f"outputs would replace or mix with the inputs, choose a separate folder")
    if os.path.isdir(out_dir):
        for name in sorted(os.listdir(out_dir)):
            if name.startswith("manifest") and name.endswith(".run.json"):
                try:
                    with open(os.path.join(out_dir, name), encoding="utf-8") as f:
                        other = json.load(f).get("stage")
                except (OSError, ValueError, AttributeError):
                    continue
                if other and other != stage.name:
                    raise ConfigError(f"{stage.name}: --out {out_dir} holds the outputs of stage "
                                      f"{other} ({name}); choose a separate folder")


def check_items_apart(stage: Stage, items: list, out_dir: str) -> None:
    """Refuse a run whose output folder holds input files of its items (any item), unless the
    stage writes beside its inputs by design. Folders are resolved once each (symlinks too)."""
    if stage.writes_beside_inputs:
        return
    out = _real(out_dir)
    resolved: dict[str, str] = {}
    for item in items:
        for path in item.inputs.values():
            if not isinstance(path, (str, os.PathLike)):
                continue
            folder = os.path.dirname(os.path.abspath(os.fspath(path)))
            if folder not in resolved:
                resolved[folder] = _real(folder)
            real_folder = resolved[folder]
            if real_folder == out or real_folder.startswith(out.rstrip(os.sep) + os.sep):
                raise ConfigError(f"{stage.name}: --out {out_dir} holds the input {path} of item "
                                  f"{item.key}; outputs could replace inputs, choose a separate folder")


def _progress(name: str, total: int, quiet: bool):
    if quiet or total == 0 or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="item", dynamic_ncols=True)


def _write_preview(stage: Stage, cfg: dict, ctx: Context, records: list[dict]) -> str | None:
    """Contact sheet of a few random successful outputs (seeded, so reruns pick the same ones)."""
    if type(stage).preview is Stage.preview or not records:
        return None
    rng = np.random.default_rng(ctx.run_seed)
    chosen = sorted(rng.choice(len(records), size=min(stage.preview_count, len(records)),
                               replace=False))
    tiles, labels = [], []
    for i in chosen:
        try:
            tile = stage.preview(records[i], cfg, ctx)
        except Exception as exc:  # a preview must never fail the run
            print(f"warning: preview of {records[i]['key']} failed: {exc}", file=sys.stderr)
            continue
        if tile is not None:
            tiles.append(tile)
            labels.append(printable(records[i]["key"].split("/")[-1]))  # OpenCV crashes on surrogates
    if not tiles:
        return None
    path = os.path.join(ctx.out_dir, "preview.png")
    write_image(path, contact_sheet(tiles, ncols=4, labels=labels))
    return path


def print_summary(summary: RunSummary, jobs: int, backend: str) -> None:
    """Counts, throughput and where everything is."""
    s = summary
    rate = s.processed / s.seconds if s.seconds > 0 else 0.0
    lines = [f"{s.stage}: {s.total} item(s) — {s.processed} written, {s.skipped} already done, "
             f"{s.failed} failed",
             f"  throughput {rate:.1f} items/s ({s.seconds:.1f} s, {jobs} job(s), {backend})",
             f"  output:   {s.out_dir}"]
    if s.manifest:
        lines.append(f"  manifest: {s.manifest} (+ .csv)")
    if s.preview:
        lines.append(f"  preview:  {s.preview}")
    if s.failures:
        lines.append(f"  failures: {s.failures}")
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # e.g. piped into head: the reader is gone, the run is not at fault
        silence_stdout()


def silence_stdout() -> None:
    """Point stdout at /dev/null (after a broken pipe), so later writes and exit do not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
