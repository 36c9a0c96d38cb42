"""The training loop: one function, :func:`fit`, that runs any :class:`~face3d_data.train.task.Task`.

- **Distribution**: started by ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in the
  environment) it joins a process group (NCCL on CUDA, gloo on CPU) and wraps the model in
  DistributedDataParallel; otherwise it runs in one process. ``batch_size`` is global: each rank
  takes ``batch_size / world_size`` consecutive samples of the epoch's global batch. Only rank 0
  writes files; the only collectives are DDP's gradient reduction and one gather of the
  bad-sample check at the start (no per-iteration barriers).
- **Sampling** (:class:`EpochBatches`): epoch ``e`` visits a permutation of the samples seeded by
  ``(seed, e)``, in ``len // batch_size`` full batches; a sample's augmentation is seeded by
  ``(seed, e, key)``. Neither depends on the number of workers or ranks.
- **Resume** (``resume="auto"``): ``RUN/checkpoints/last.pt`` holds the model, optimizer,
  scheduler, scaler, epoch, batch position in the epoch's permutation, step, RNG states, resolved
  configuration and datalist hashes (:mod:`face3d_data.train.checkpoint`). A resumed run continues
  with the next batch of the same permutation; on CPU with ``deterministic`` its weights are
  bit-identical to an uninterrupted run's. A changed configuration (other than
  :data:`~face3d_data.train.task.RUN_CONTROL_KEYS`) or datalist is refused unless ``force``.
- **Mixed precision**: ``amp`` bf16 (default on CUDA) or fp16 (with a GradScaler) via autocast;
  tasks compute losses in float32.
- **Non-finite guard**: a step whose gradient norm (after DDP's reduction, so every rank agrees)
  or loss is not finite is skipped (no optimizer step, and the model's buffers, e.g. BatchNorm
  running statistics, restored to their values before the step's forward pass; the learning-rate
  schedule and the step count still advance), its sample keys logged to ``RUN/nonfinite.jsonl``; after
  ``max_nonfinite`` in a row the run stops with :class:`NonFiniteAbort` (exit 4).
- **Outputs** (rank 0): ``config.yaml``, ``run.json``, ``metrics.jsonl`` (one JSON per logged step:
  ``step``, ``epoch``, ``loss``, the loss parts, ``lr``, ``samples_per_s``; ``val_*`` rows after
  evaluations), ``tb/`` (TensorBoard, when installed), ``previews/step_<N>.png``,
  ``checkpoints/{last,best}.pt``, ``failures.csv`` (samples dropped by the start check).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from face3d_data.errors import ConfigError
from face3d_data.io.atomic import write_bytes, write_text
from face3d_data.train import checkpoint as ckpt
from face3d_data.train.registry import make_task
from face3d_data.train.task import (
    COMMON_DEFAULTS,
    RUN_CONTROL_KEYS,
    epoch_seed,
    scan_samples,
)


class NonFiniteAbort(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient (exit status 4)."""


@dataclasses.dataclass
class RunSummary:
    """What :func:`fit` did."""

    steps: int                 # optimizer steps done in total (skipped ones included)
    epoch: int                 # epoch in progress at the end
    dropped: int               # samples dropped by the start-of-run check
    skipped: int               # non-finite steps skipped in this process
    resumed_from: str | None   # checkpoint the run continued from
    best: float | None         # best validation metric
    last_loss: float | None    # mean loss of the last logged window
    exit_code: int             # 0, or 3 when samples were dropped


@dataclasses.dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


class EpochBatches(torch.utils.data.Sampler):
    """One rank's batches of one epoch: lists of ``(index, epoch)`` for ``SampleDataset``.

    Global batch ``b`` of epoch ``e`` is ``perm[b·B : (b+1)·B]`` of the permutation seeded by
    ``(seed, e)``; rank ``r`` takes its ``r``-th slice of ``B / world`` samples. Batches before
    ``start`` (already consumed when resuming) are skipped. The last partial batch is dropped.
    """

    def __init__(self, n: int, global_batch: int, world: int, rank: int, seed: int, epoch: int,
                 start: int = 0):
        self.n, self.batch, self.world, self.rank = n, global_batch, world, rank
        self.seed, self.epoch, self.start = seed, epoch, start
        self.local = global_batch // world

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.batch

    def __len__(self) -> int:
        return max(self.batches_per_epoch - self.start, 0)

    def __iter__(self):
        perm = np.random.default_rng(epoch_seed(self.seed, self.epoch)).permutation(self.n)
        for b in range(self.start, self.batches_per_epoch):
            lo = b * self.batch + self.rank * self.local
            yield [(int(i), self.epoch) for i in perm[lo:lo + self.local]]


def resolve_device(name: str, dist: Dist) -> torch.device:
    """``auto`` → CUDA (this rank's ``LOCAL_RANK`` device) when available, else CPU."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device: expected auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but torch sees no CUDA device")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(dist.local_rank)
    return torch.device("cuda", dist.local_rank)


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = full precision): ``auto`` is bf16 on CUDA, none on CPU."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "none"
    if name == "none":
        return None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp16":
        if device.type != "cuda":
            raise ConfigError("amp fp16 needs CUDA (use bf16 or none on CPU)")
        return torch.float16
    raise ConfigError(f"amp: expected auto, none, bf16 or fp16, got {name!r}")


def set_deterministic(on: bool) -> None:
    """Deterministic kernels (``torch.use_deterministic_algorithms``; cuBLAS workspace; no cudnn
    autotuning). Must run before CUDA work starts."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(on))
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = bool(on)


def init_distributed(device_name: str) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (NCCL for CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    dist = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not torch.distributed.is_initialized():
        use_cuda = device_name != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(dist.local_rank)
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    return dist


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch moved to ``device`` (non-blocking); other values unchanged."""
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def resolve_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with missing common keys filled from :data:`COMMON_DEFAULTS`, and checked."""
    out = dict(COMMON_DEFAULTS)
    out.update(cfg)
    for key in ("epochs", "max_steps", "batch_size", "workers", "log_every", "save_every",
                "eval_every", "preview_every", "max_nonfinite", "limit", "lr_decay_epochs"):
        if isinstance(out[key], bool) or not isinstance(out[key], int) or out[key] < 0:
            raise ConfigError(f"{key}: expected an integer >= 0, got {out[key]!r}")
    if out["batch_size"] < 1 or out["max_nonfinite"] < 1 or out["lr_decay_epochs"] < 1:
        raise ConfigError("batch_size, max_nonfinite and lr_decay_epochs must be >= 1")
    if out["epochs"] < 1 and out["max_steps"] < 1:
        raise ConfigError("set epochs >= 1 or max_steps >= 1")
    if out["optimizer"] not in ("adam", "adamw"):
        raise ConfigError(f"optimizer: expected adam or adamw, got {out['optimizer']!r}")
    if out["check_samples"] not in ("full", "header", "none"):
        raise ConfigError(f"check_samples: expected full, header or none, got {out['check_samples']!r}")
    if not (float(out["lr"]) > 0 and float(out["lr_decay"]) > 0 and float(out["grad_clip"]) >= 0):
        raise ConfigError("lr > 0, lr_decay > 0 and grad_clip >= 0 required")
    return out


def build_optimizer(task, model: torch.nn.Module, cfg: Mapping[str, Any], steps_per_epoch: int):
    """(optimizer, per-step LambdaLR): lr × lr_decay^⌊step / (lr_decay_epochs · steps_per_epoch)⌋."""
    params = task.parameter_groups(model)
    kwargs = {"lr": float(cfg["lr"]), "betas": tuple(float(b) for b in cfg["betas"]),
              "weight_decay": float(cfg["weight_decay"])}
    opt = (torch.optim.AdamW if cfg["optimizer"] == "adamw" else torch.optim.Adam)(params, **kwargs)
    period = max(int(cfg["lr_decay_epochs"]) * steps_per_epoch, 1)
    decay = float(cfg["lr_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: decay ** (step // period))
    return opt, sched


def write_failures(path: str, failures) -> None:
    """``failures.csv``: one row per dropped sample (key, path, error)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["key", "path", "error"])
    for f in failures:
        writer.writerow([f.key, f.path, f.error])
    write_text(path, buf.getvalue())


def _gather(obj, dist: Dist) -> list:
    if dist.world == 1:
        return [obj]
    out = [None] * dist.world
    torch.distributed.all_gather_object(out, obj)
    return out


class _Logger:
    """metrics.jsonl (+ TensorBoard) on rank 0."""

    def __init__(self, out_dir: str, enabled: bool, tensorboard: bool, resume_step: int | None):
        self.enabled = enabled
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and os.path.exists(self.path):
            # rows logged after the checkpoint we resume from are replayed: drop them
            with open(self.path, encoding="utf-8") as f:
                rows = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_text(self.path, "".join(rows))
        elif resume_step is None and os.path.exists(self.path):
            os.remove(self.path)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(os.path.join(out_dir, "tb"))
            except ImportError:
                self.tb = None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {f"val_{k}": float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def fit(task_name: str, cfg: Mapping[str, Any], out_dir: str, resume: str = "auto",
        force: bool = False, quiet: bool = False) -> RunSummary:
    """Train ``task_name`` with the resolved configuration ``cfg``, writing into ``out_dir``.

    Args:
        resume: ``auto`` (continue from ``out_dir/checkpoints/last.pt`` when it exists),
            ``never`` (start afresh; existing checkpoints are replaced) or a checkpoint path.
        force: resume even if the configuration or a datalist changed.

    Raises:
        ConfigError: bad options (exit 2). NonFiniteAbort: too many non-finite steps (exit 4).
    """
    cfg = resolve_config(cfg)
    set_deterministic(bool(cfg["deterministic"]))
    dist = init_distributed(cfg["device"])
    device = resolve_device(cfg["device"], dist)
    amp_dtype = resolve_amp(cfg["amp"], device)
    if cfg["batch_size"] % dist.world:
        raise ConfigError(f"batch_size {cfg['batch_size']} is not divisible by the {dist.world} ranks")
    ckpt_dir = os.path.join(out_dir, "checkpoints")

    task = make_task(task_name, cfg)
    state = None
    resumed_from = None
    if resume not in ("auto", "never"):
        state, resumed_from = ckpt.load_checkpoint(resume), resume
    elif resume == "auto" and os.path.exists(os.path.join(ckpt_dir, "last.pt")):
        resumed_from = os.path.join(ckpt_dir, "last.pt")
        state = ckpt.load_checkpoint(resumed_from)
    hashes = ckpt.data_hashes(task.data_files())
    if state is not None:
        if state["task"] != task_name:
            raise ConfigError(f"{resumed_from}: a {state['task']!r} checkpoint, not {task_name!r}")
        changed = ckpt.config_changes(state["config"], cfg, RUN_CONTROL_KEYS)
        if state.get("data_hashes") != hashes:
            changed.append("datalist contents")
        if changed and not force:
            raise ConfigError(f"cannot resume from {resumed_from}: changed {', '.join(changed)} "
                              "(use --force to resume anyway, or --resume never / a new --out)")
        task.load_extras(state.get("extras") or {})

    train_ds, val_ds = task.datasets()
    failures: list = []
    if state is not None:
        dropped = list(state.get("dropped", []))
        train_ds.drop_keys(set(dropped))
    else:
        if cfg["check_samples"] != "none":
            full = cfg["check_samples"] == "full"
            mine = range(dist.rank, len(train_ds), dist.world)
            parts = _gather(scan_samples(train_ds, full, cfg["workers"], mine), dist)
            failures = sorted((f for part in parts for f in part), key=lambda f: f.key)
            if val_ds is not None and dist.main:
                failures += scan_samples(val_ds, full, cfg["workers"])
        dropped = sorted({f.key for f in failures})
        train_ds.drop_keys(set(dropped))
        if val_ds is not None:
            val_ds.drop_keys(set(dropped))
    if dist.main:
        os.makedirs(out_dir, exist_ok=True)
        if failures or (state is None and os.path.exists(os.path.join(out_dir, "failures.csv"))):
            write_failures(os.path.join(out_dir, "failures.csv"), failures)
    global_batch = int(cfg["batch_size"])
    if len(train_ds) < global_batch:
        raise ConfigError(f"{len(train_ds)} usable training samples, fewer than batch_size {global_batch}")

    sampler0 = EpochBatches(len(train_ds), global_batch, dist.world, dist.rank, cfg["seed"], 0)
    steps_per_epoch = sampler0.batches_per_epoch
    total_steps = steps_per_epoch * cfg["epochs"] if cfg["epochs"] else 0
    if cfg["max_steps"]:
        total_steps = min(total_steps, cfg["max_steps"]) if total_steps else cfg["max_steps"]

    torch.manual_seed(int(cfg["seed"]))
    np.random.seed(int(cfg["seed"]) % 2 ** 32)
    model = task.build_model()
    opt, sched = build_optimizer(task, model, cfg, steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    epoch, batch_in_epoch, step, best = 0, 0, 0, None
    if state is not None:
        model.load_state_dict(state["model"])
    model.to(device)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        epoch, batch_in_epoch, step = state["epoch"], state["batch_in_epoch"], state["step"]
        best = state.get("best")
        ckpt.set_rng_state(state["rng"])
    train_model = model
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    logger = _Logger(out_dir, dist.main, bool(cfg["tensorboard"]), step if state is not None else None)
    if dist.main:
        _write_run_files(out_dir, task_name, cfg, hashes, dist, device, amp_dtype, resumed_from)

    def save(path_name: str) -> None:
        if not dist.main:
            return
        ckpt.save_checkpoint(os.path.join(ckpt_dir, path_name), {
            "task": task_name, "config": cfg, "extras": task.checkpoint_extras(),
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step,
            "rng": ckpt.rng_state(), "data_hashes": hashes, "dropped": dropped, "best": best,
            "world_size": dist.world, "versions": _versions()})

    def evaluate() -> None:
        nonlocal best
        if not dist.main or val_ds is None or len(val_ds) == 0:
            return
        loader = torch.utils.data.DataLoader(val_ds, batch_size=max(global_batch // dist.world, 1),
                                             num_workers=cfg["workers"], shuffle=False)
        model.eval()
        with torch.no_grad():
            metrics = task.evaluate(model, loader, device)
        model.train()
        row = {"step": step, "epoch": epoch, **_scalar_metrics(metrics)}
        logger.log(row)
        value = metrics.get(task.best_metric)
        if value is not None and math.isfinite(float(value)) and (
                best is None or (float(value) < best if task.best_lower else float(value) > best)):
            best = float(value)
            save("best.pt")

    def preview(batch) -> None:
        from face3d_data.io.images import write_image

        model.eval()
        with torch.no_grad():
            picture = task.preview(model, batch)
        model.train()
        write_image(os.path.join(out_dir, "previews", f"step_{step:07d}.png"), picture)

    bar = None
    if dist.main and cfg["progress"] and not quiet and total_steps:
        from tqdm import tqdm
        bar = tqdm(total=total_steps * global_batch, initial=step * global_batch, unit="sample",
                   unit_scale=True, dynamic_ncols=True, file=sys.stderr, desc=task_name)

    nonfinite_run, skipped = 0, 0
    window: list[torch.Tensor] = []
    window_parts: dict[str, list[torch.Tensor]] = {}
    window_t0, window_steps = time.perf_counter(), 0
    last_loss = None
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = list(model.buffers())   # BatchNorm running statistics: restored when a step is skipped
    clip = float(cfg["grad_clip"]) or math.inf
    model.train()
    while step < total_steps:
        sampler = EpochBatches(len(train_ds), global_batch, dist.world, dist.rank, cfg["seed"],
                               epoch, batch_in_epoch)
        loader = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler, num_workers=cfg["workers"],
                                             pin_memory=device.type == "cuda")
        for batch in loader:
            batch = to_device(batch, device)
            saved_buffers = [b.detach().clone() for b in buffers]
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                total, parts = task.loss(train_model, batch)
            scaler.scale(total).backward()
            scaler.unscale_(opt)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
            loss_ok = bool(torch.isfinite(total.detach()))
            if bool(torch.isfinite(grad_norm)) and loss_ok:
                scaler.step(opt)
                nonfinite_run = 0
                window.append(total.detach().float())
                for k, v in parts.items():
                    window_parts.setdefault(k, []).append(v.detach().float())
            else:
                nonfinite_run += 1
                skipped += 1
                with torch.no_grad():  # a skipped step leaves no trace: BatchNorm statistics restored
                    for b, kept in zip(buffers, saved_buffers):
                        b.copy_(kept)
                _log_nonfinite(out_dir, dist, step, batch.get("key"), total, grad_norm)
            scaler.update()
            opt.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # a skipped first step makes torch warn about the order
                warnings.simplefilter("ignore", UserWarning)
                sched.step()
            step += 1
            batch_in_epoch += 1
            window_steps += 1
            if bar is not None:
                bar.update(global_batch)
            if nonfinite_run >= cfg["max_nonfinite"]:
                logger.close()
                if bar is not None:
                    bar.close()
                raise NonFiniteAbort(f"{nonfinite_run} consecutive steps with a non-finite loss or "
                                     f"gradient (last at step {step}); see {out_dir}/nonfinite.jsonl")
            if batch_in_epoch == steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
            if dist.main and ((cfg["log_every"] and step % cfg["log_every"] == 0) or step == total_steps):
                elapsed = max(time.perf_counter() - window_t0, 1e-9)
                row = {"step": step, "epoch": epoch, "lr": sched.get_last_lr()[0],
                       "samples_per_s": window_steps * global_batch / elapsed}
                if window:
                    last_loss = float(torch.stack(window).mean())
                    row["loss"] = last_loss
                    row.update({k: float(torch.stack(v).mean()) for k, v in window_parts.items()})
                else:
                    row["loss"] = float("nan")
                logger.log(row)
                if bar is not None and window:
                    bar.set_postfix(loss=f"{last_loss:.4g}", refresh=False)
                window, window_parts, window_t0, window_steps = [], {}, time.perf_counter(), 0
            if dist.main and cfg["preview_every"] and step % cfg["preview_every"] == 0:
                preview(batch)
            epoch_end = batch_in_epoch == 0
            if cfg["eval_every"] and step % cfg["eval_every"] == 0 and not epoch_end:
                evaluate()
            if epoch_end:
                evaluate()
            if step == total_steps or epoch_end or (cfg["save_every"] and step % cfg["save_every"] == 0):
                save("last.pt")
            if step >= total_steps or epoch_end:
                break
        else:
            # an epoch with no batches left (resumed exactly at its end)
            if batch_in_epoch >= steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
    if bar is not None:
        bar.close()
    logger.close()
    return RunSummary(step, epoch, len(dropped), skipped, resumed_from, best, last_loss,
                      3 if dropped else 0)


def _log_nonfinite(out_dir: str, dist: Dist, step: int, keys, total, grad_norm) -> None:
    row = {"step": step + 1, "rank": dist.rank, "loss": float(total.detach()),
           "grad_norm": float(grad_norm), "keys": list(keys) if keys is not None else []}
    line = json.dumps(row) + "\n"
    if dist.main:
        with open(os.path.join(out_dir, "nonfinite.jsonl"), "a", encoding="utf-8") as f:
            f.write(line)
    else:
        sys.stderr.write(f"non-finite step (rank {dist.rank}): {line}")


def _versions() -> dict[str, str]:
    import face3d_data

    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "face3d_data": getattr(face3d_data, "__version__", "")}


def _write_run_files(out_dir, task_name, cfg, hashes, dist, device, amp_dtype, resumed_from) -> None:
    import yaml

    write_text(os.path.join(out_dir, "config.yaml"),
               f"# resolved configuration of task {task_name}\n" + yaml.safe_dump(dict(cfg), sort_keys=True))
    info = {"task": task_name, "world_size": dist.world, "device": str(device),
            "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "none",
            "resumed_from": resumed_from, "data_hashes": hashes, "versions": _versions(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_bytes(os.path.join(out_dir, "run.json"), (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
