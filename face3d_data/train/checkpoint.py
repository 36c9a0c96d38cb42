"""Checkpoints: everything a run needs to continue exactly where it stopped, written atomically.

A checkpoint (``torch.save`` of a dict, format :data:`FORMAT`) holds:

- ``task``, ``config`` (the resolved configuration), ``extras`` (:meth:`Task.checkpoint_extras`)
- ``model`` (the unwrapped ``state_dict``), ``optimizer``, ``scheduler``, ``scaler``
- ``epoch`` (the epoch in progress), ``batch_in_epoch`` (global batches of that epoch's
  permutation already consumed), ``step`` (optimizer steps so far, skipped ones included)
- ``rng``: Python, NumPy and torch CPU generator states (rank 0's; CUDA state of rank 0's device)
- ``data_hashes``: SHA-256 and line count of each :meth:`Task.data_files` file
- ``dropped``: keys of the samples dropped by the start-of-run check (not re-checked on resume)
- ``best``: the best validation metric so far, ``world_size``, ``versions``
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from face3d_data.errors import ConfigError
from face3d_data.io.atomic import atomic_write

FORMAT = 1


def file_digest(path: str) -> dict[str, Any]:
    """``{"sha256": hex, "lines": n}`` of a file (datalists, statistics)."""
    h = hashlib.sha256()
    lines = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            lines += chunk.count(b"\n")
    return {"sha256": h.hexdigest(), "lines": lines}


def data_hashes(paths) -> dict[str, dict]:
    """:func:`file_digest` of each existing path, keyed by absolute path."""
    return {os.path.abspath(p): file_digest(p) for p in paths if p and os.path.isfile(p)}


def rng_state() -> dict[str, Any]:
    """The process's Python, NumPy, torch CPU (and current CUDA device) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`rng_state`'s output."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(path: str, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a crash leaves the previous file intact)."""
    payload = dict(state)
    payload["format"] = FORMAT
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        ConfigError: missing file or not a face3d-data checkpoint.
    """
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint {path!r} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint file
        raise ConfigError(f"checkpoint {path!r} cannot be read: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "task" not in state:
        raise ConfigError(f"{path!r} is not a face3d-data training checkpoint")
    return state


def config_changes(saved: Mapping[str, Any], current: Mapping[str, Any], ignore) -> list[str]:
    """Keys whose values differ between two configurations (``ignore`` excluded)."""
    keys = (set(saved) | set(current)) - set(ignore)
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def model_from_checkpoint(path: str, overrides: Mapping[str, Any] | None = None):
    """(task, model in eval mode on CPU, checkpoint dict) rebuilt from a checkpoint alone.

    ``overrides`` replace configuration keys (e.g. the evaluation datalist) before the task is built.
    """
    from face3d_data.train.registry import task_class

    state = load_checkpoint(path)
    cfg = dict(state["config"])
    cfg.update(overrides or {})
    task = task_class(state["task"])(cfg)
    task.load_extras(state.get("extras") or {})
    model = task.build_model()
    model.load_state_dict(state["model"])
    model.eval()
    return task, model, state
