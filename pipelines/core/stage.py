"""The Stage interface: what a stage module implements, and what the runner hands it.

A stage turns a list of *items* (one image, one sample, one mesh...) into files. It implements
``list_items`` and ``process``; the runner does everything else (parallelism, seeding, resuming,
failures, manifests, progress, the contact sheet).
"""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any, Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Item:
    """One unit of work.

    Attributes:
        key: unique, stable identifier (e.g. the input's relative path without extension, with
            ``/`` separators). Seeds, sharding and resuming are derived from it.
        inputs: the files this item reads, ``{role: path}``; recorded in the manifest.
    """

    key: str
    inputs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Context:
    """What the runner gives a stage.

    Attributes:
        stage: the stage name.
        out_dir: the output folder (absolute).
        run_seed: the global seed of the run (``--seed``), in every hook.
        item_seed: the item's own seed, derived from ``run_seed``, the stage and the key
            (``process`` only; ``None`` in ``list_items``/``finish``).
        rng: ``numpy.random.Generator`` seeded with ``item_seed`` in ``process`` and with
            ``run_seed`` in ``list_items``/``finish``/``preview``.
        key: the item key (``process`` only).
        options: runner options (``jobs``, ``backend``, ``shard``...), read-only.
    """

    stage: str
    out_dir: str
    run_seed: int
    rng: np.random.Generator
    item_seed: int | None = None
    key: str | None = None
    options: dict = dataclasses.field(default_factory=dict)
    _resources: Callable[[], Any] | None = None
    #: real paths of this item's input files: ``path()`` refuses to name one of them
    _protected: frozenset = frozenset()
    #: ``os.path.realpath`` or an equivalent shared by a batch's contexts (:class:`RealPaths`)
    _real: Callable[[str], str] | None = None

    @property
    def resources(self) -> Any:
        """What the stage's ``setup(cfg)`` returned (computed once per process)."""
        return None if self._resources is None else self._resources()

    def path(self, *parts: str) -> str:
        """An absolute path under ``out_dir``.

        Raises:
            InputError: when the path is one of the item's input files (an output may never
                replace an input).
        """
        path = os.path.join(self.out_dir, *parts)
        if self._protected and (self._real or os.path.realpath)(path) in self._protected:
            from face3d_data.errors import InputError

            raise InputError(path, "an output of this item would replace its input file; "
                                   "write the outputs to a separate folder")
        return path

    def relative(self, path: str) -> str:
        """``path`` relative to ``out_dir`` (forward slashes), as ``process`` reports outputs."""
        return os.path.relpath(os.path.abspath(path), self.out_dir).replace(os.sep, "/")


class RealPaths:
    """``os.path.realpath`` with each folder resolved once (per instance).

    The real path of ``folder/name`` is the folder's real path joined with ``name`` unless ``name``
    is a symbolic link (then the whole path is resolved as ``os.path.realpath`` does) or empty,
    ``.`` or ``..``; so the files of a batch, which lie in a few folders, cost one ``lstat`` each
    instead of one per path component. Only absolute ``str`` folders are remembered (a relative one
    depends on the working directory); anything else is passed to ``os.path.realpath``. The
    results equal ``os.path.realpath``'s as long as the folders are not replaced meanwhile.
    """

    def __init__(self):
        self._folders: dict[str, str] = {}

    def __call__(self, path, lstat_done: bool = False) -> str:
        """The real path of ``path`` (``lstat_done``: the caller has just seen, with ``os.lstat``,
        that ``path`` exists and is not a symbolic link)."""
        path = os.fspath(path)
        if not isinstance(path, str):
            return os.path.realpath(path)
        head, name = os.path.split(path)
        if name in ("", ".", "..") or not os.path.isabs(head):
            return os.path.realpath(path)
        if not lstat_done:
            try:
                if stat.S_ISLNK(os.lstat(path).st_mode):
                    return os.path.realpath(path)
            except OSError:  # missing (or unreadable): realpath keeps the name as it is
                pass
        folder = self._folders.get(head)
        if folder is None:
            folder = self._folders[head] = os.path.realpath(head)
        return os.path.join(folder, name)


class Stage:
    """Base class of a stage. Subclasses set ``name`` and ``summary`` and implement the hooks.

    Hooks (``cfg`` is the effective configuration: an instance of the stage's ``Options``
    dataclass, see :mod:`pipelines.core.options`, or a plain dict for a stage without one):

    - ``list_items(cfg, ctx) -> list[Item]`` (required): every item of the job, in any order.
    - ``setup(cfg)`` (optional): load what every item needs (a model...); cached once per worker
      process and available as ``ctx.resources``.
    - ``process(item, cfg, ctx) -> dict`` (required unless ``process_batch`` is overridden): do
      one item; write its files under ``ctx.out_dir`` with :mod:`face3d_data.io`; return
      ``{"outputs": [relative paths], ...}`` plus any scalar columns for the manifest. Raise on a bad item (preferably
      :class:`face3d_data.errors.InputError` naming the file).
    - ``finish(cfg, ctx, records)`` (optional): after all items — datalists, reports. ``records``
      are the manifest rows of the successful items (dicts with ``key``, ``inputs``, ``outputs``...).
    - ``preview(record, cfg, ctx) -> RGB uint8 | None`` (optional): one tile of ``preview.png``.
    - ``check_config(cfg)`` (optional): raise :class:`face3d_data.errors.ConfigError` early.
    - ``process_batch(items, cfg, ctxs) -> list[dict | Exception]`` (optional, with
      ``batch_size > 1``): do several items at once (e.g. one matrix product for all of them);
      one result or exception per item, in order.

    Batches are fixed runs of ``batch_size`` consecutive keys of the sorted item list, so a batch's
    composition never depends on ``--jobs``, the backend, ``--shard`` (a shard takes whole batches)
    or resuming (a batch with any unfinished item is redone whole, giving the same bytes). Only
    ``--limit`` can shorten the last batch.
    """

    name: str = ""
    summary: str = ""
    #: the frozen dataclass of this stage's options (fields = the YAML keys); None = plain dict
    Options: type | None = None
    #: option keys whose values are input folders or files the stage reads; the runner refuses an
    #: ``--out`` that equals, contains or lies inside one of them, and any output that would
    #: replace an input file (see :meth:`input_paths` for inputs not named by an option)
    input_options: tuple[str, ...] = ()
    #: True for a stage that by design writes only new names beside its inputs (its ``--out`` is
    #: the input folder, e.g. data_preparation); the per-item output check still applies
    writes_beside_inputs: bool = False
    #: option keys whose values are files (or folders) the outputs depend on by content (a model,
    #: an asset); resume compares their content hash, so a rebuilt file redoes the items.
    #: Values that are not existing paths ("builtin", null) count by their text.
    asset_options: tuple[str, ...] = ()
    #: number of tiles in preview.png
    preview_count: int = 16
    #: items per call of ``process_batch``
    batch_size: int = 1

    def check_config(self, cfg: dict) -> None:
        pass

    def input_paths(self, cfg) -> list[str]:
        """Input folders/files of the run (default: the values of ``input_options`` that are set).

        Override when inputs come from elsewhere (e.g. a folder recorded in another manifest).
        """
        paths = []
        for key in self.input_options:
            value = cfg[key] if key in cfg else None
            if isinstance(value, (list, tuple)):
                paths += [str(v) for v in value if v]
            elif value:
                paths.append(str(value))
        return paths

    def setup(self, cfg: dict) -> Any:
        return None

    def list_items(self, cfg: dict, ctx: Context) -> list[Item]:
        raise NotImplementedError

    def process(self, item: Item, cfg: dict, ctx: Context) -> dict:
        raise NotImplementedError

    def process_batch(self, items: list[Item], cfg: dict, ctxs: list[Context]) -> list:
        results = []
        for item, ctx in zip(items, ctxs):
            try:
                results.append(self.process(item, cfg, ctx))
            except Exception as exc:  # reported per item by the runner
                results.append(exc)
        return results

    def finish(self, cfg: dict, ctx: Context, records: list[dict]) -> None:
        pass

    def preview(self, record: dict, cfg: dict, ctx: Context):
        return None
