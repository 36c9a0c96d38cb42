"""The task protocol the training loop runs, and the dataset base every task's data builds on.

A *task* (``prnet``, ``rnet``, ``params``) is a :class:`Task` subclass registered in
:data:`face3d_data.train.registry.TASKS`. The loop (:mod:`face3d_data.train.loop`) knows nothing
about faces: it asks the task for a model, datasets, a loss, previews and an evaluation, and does
everything else itself (distribution, mixed precision, resume, logging, the non-finite guard,
bad-sample bookkeeping).

Configuration is a plain ``dict``: the common keys of ``pipelines/configs/train_common.yaml``
(:data:`COMMON_DEFAULTS` mirrors them for library callers) merged with the task's own
``pipelines/configs/train_<task>.yaml``. The library never reads those files; the CLI does and
passes the resolved dict.

Datasets (:class:`SampleDataset`) are indexed by ``(index, epoch)`` pairs; the random generator
of one sample is a pure function of ``(seed, epoch, key)`` (:func:`sample_rng`), so augmentation
does not depend on the number of data workers, the number of ranks or the order samples run in.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from face3d_data.errors import ConfigError, InputError

#: Keys every task's configuration has (defaults of ``pipelines/configs/train_common.yaml``).
COMMON_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "max_steps": 0,
    "batch_size": 16,
    "seed": 0,
    "deterministic": False,
    "device": "auto",
    "amp": "auto",
    "workers": 2,
    "optimizer": "adam",
    "lr": 1e-4,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "lr_decay": 0.5,
    "lr_decay_epochs": 5,
    "grad_clip": 0.0,
    "max_nonfinite": 10,
    "log_every": 10,
    "save_every": 500,
    "eval_every": 0,
    "preview_every": 500,
    "check_samples": "full",
    "limit": 0,
    "tensorboard": True,
    "progress": True,
}

#: Keys that may differ between a checkpoint's configuration and a resumed run's (they change
#: how long or where the run goes, never what a step computes).
RUN_CONTROL_KEYS = frozenset({"epochs", "max_steps", "device", "workers", "log_every", "save_every",
                              "eval_every", "preview_every", "check_samples", "tensorboard",
                              "progress"})


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def sample_seed(seed: int, epoch: int, key: str) -> int:
    """A 63-bit seed for one sample in one epoch (stable across runs, machines, workers, ranks)."""
    return _hash64(f"{int(seed)}\x00sample\x00{int(epoch)}\x00{key}") >> 1


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """The random generator of one sample in one epoch (:func:`sample_seed`)."""
    return np.random.default_rng(sample_seed(seed, epoch, key))


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of an epoch's sample permutation."""
    return _hash64(f"{int(seed)}\x00permutation\x00{int(epoch)}") >> 1


@dataclasses.dataclass(frozen=True)
class Failure:
    """One dropped sample: its key, the file at fault and what is wrong (a ``failures.csv`` row)."""

    key: str
    path: str
    error: str


class SampleDataset(torch.utils.data.Dataset):
    """Base of every task's dataset: ``keys`` + ``load``, indexed by ``(index, epoch)``.

    Subclasses set ``self.keys`` (one stable string per sample, e.g. its path relative to the
    data root without extension) and implement :meth:`load` and :meth:`check`. The base class
    derives each sample's generator, drops bad samples and reports them as :class:`Failure` rows.

    ``dataset[(i, epoch)]`` returns ``load(i, rng)`` plus ``"key"``; ``dataset[i]`` is epoch 0.
    ``augment`` False (validation, evaluation) passes ``rng=None``.
    """

    keys: list[str]

    def __init__(self, seed: int = 0, augment: bool = False):
        self.seed = int(seed)
        self.augment = bool(augment)
        self.keys = []

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, item) -> dict:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        key = self.keys[index]
        rng = sample_rng(self.seed, epoch, key) if self.augment else None
        sample = self.load(index, rng)
        sample["key"] = key
        return sample

    def load(self, index: int, rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
        """Sample ``index`` as a dict of tensors (no batch axis), augmented with ``rng`` if given."""
        raise NotImplementedError

    def check(self, index: int, full: bool = True) -> None:
        """Raise :class:`~face3d_data.errors.InputError` (naming the file) if sample ``index`` is bad.

        ``full`` False: a cheap check (files exist, headers and shapes); True also reads the data
        (decodes the image, finite labels). Called once per sample at the start of a run.
        """
        raise NotImplementedError

    def keep(self, indices) -> None:
        """Restrict the dataset to ``indices`` (in order); subclasses with per-sample lists extend it."""
        indices = list(indices)
        self.keys = [self.keys[i] for i in indices]
        for name in getattr(self, "per_sample_fields", ()):
            setattr(self, name, [getattr(self, name)[i] for i in indices])

    def drop_keys(self, bad: set[str]) -> None:
        """Remove the samples whose key is in ``bad``."""
        self.keep([i for i, k in enumerate(self.keys) if k not in bad])


class _CheckView(torch.utils.data.Dataset):
    """``check`` of every sample, as a dataset (so a DataLoader's workers run it in parallel)."""

    def __init__(self, dataset: SampleDataset, indices, full: bool):
        self.dataset, self.indices, self.full = dataset, list(indices), full

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, j):
        i = self.indices[j]
        try:
            self.dataset.check(i, full=self.full)
            return None
        except InputError as exc:
            return (self.dataset.keys[i], exc.path or "", exc.message)
        except Exception as exc:  # noqa: BLE001 - anything unreadable is a bad sample, not a crash
            return (self.dataset.keys[i], "", f"{type(exc).__name__}: {exc}")


def scan_samples(dataset: SampleDataset, full: bool = True, workers: int = 0,
                 indices=None) -> list[Failure]:
    """Run :meth:`SampleDataset.check` on ``indices`` (default all) with ``workers`` processes."""
    view = _CheckView(dataset, range(len(dataset)) if indices is None else indices, full)
    loader = torch.utils.data.DataLoader(view, batch_size=None, num_workers=workers,
                                         collate_fn=lambda x: x)
    return [Failure(*row) for row in loader if row is not None]


class Task:
    """What one model family needs from the loop. Subclass it and register it in ``registry.TASKS``.

    Lifetime: the loop builds ``Task(cfg)`` (cfg = resolved config dict, common + task keys) on
    every rank, calls :meth:`check_config`, :meth:`datasets`, :meth:`build_model`, then per step
    :meth:`loss`; on rank 0 only :meth:`preview` and :meth:`evaluate`. ``eval`` / ``predict`` on
    the CLI rebuild the task from a checkpoint (:meth:`load_extras` gets what
    :meth:`checkpoint_extras` returned at save time).
    """

    #: registry name (``prnet``, ``rnet``, ``params``)
    name: str = ""
    #: the evaluation metric that selects ``best.pt`` and whether lower is better
    best_metric: str = "loss"
    best_lower: bool = True

    def __init__(self, cfg: Mapping[str, Any]):
        self.cfg = dict(cfg)

    # ---- configuration and data -------------------------------------------------------------
    def check_config(self) -> None:
        """Raise :class:`~face3d_data.errors.ConfigError` on bad or missing task options."""

    def datasets(self) -> tuple[SampleDataset, SampleDataset | None]:
        """(train, val or None) datasets; train augments (``augment=True``), val does not."""
        raise NotImplementedError

    def eval_dataset(self, datalist: str) -> SampleDataset:
        """The evaluation dataset of ``eval TASK --datalist LIST`` (no augmentation)."""
        raise NotImplementedError

    def data_files(self) -> list[str]:
        """Files whose content defines the data (datalists, label statistics): hashed into the
        checkpoint; a resumed run refuses changed files unless forced."""
        return []

    # ---- model and optimisation ---------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        """The network, on CPU, randomly initialised (or from local weight files in the config)."""
        raise NotImplementedError

    def parameter_groups(self, model: torch.nn.Module) -> list[dict] | Any:
        """Parameters handed to the optimizer (default all); override for per-group settings."""
        return model.parameters()

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total scalar loss, {part name: scalar tensor}) of one batch already on the device.

        ``model`` may be wrapped in DistributedDataParallel: call it, do not reach into it. Runs
        inside autocast when AMP is on; compute the loss terms in float32.
        """
        raise NotImplementedError

    # ---- outputs ------------------------------------------------------------------------------
    def preview(self, model: torch.nn.Module, batch: dict) -> np.ndarray:
        """(H, W, 3) uint8 RGB picture of the first few samples of a batch (model in eval mode)."""
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, loader, device: torch.device,
                 report_dir: str | None = None) -> dict[str, Any]:
        """Metrics over a (non-augmented) loader, JSON-serialisable; the loop logs them with
        the prefix ``val_``. With ``report_dir`` also write the worst-cases picture there."""
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, image_paths: list[str], out_dir: str,
                device: torch.device) -> list[Failure]:
        """``predict TASK``: write outputs for each image; returns the images that failed."""
        raise ConfigError(f"predict is not available for task {self.name!r}")

    def checkpoint_extras(self) -> dict[str, Any]:
        """Task state saved in every checkpoint (e.g. UV assets, whitening statistics), so that
        ``eval`` / ``predict`` work from the checkpoint alone. Plain tensors / arrays / numbers."""
        return {}

    def load_extras(self, extras: Mapping[str, Any]) -> None:
        """Restore what :meth:`checkpoint_extras` saved (called before :meth:`build_model`)."""
