"""Readers for the parsing stage's maps and for multi-view datalists, so a trainer can load a group.

File names (one place; the ``parsing`` stage writes them under its ``--out`` for the sample
``<key>`` = the sample's path relative to the dataset root, without extension):

- ``<key>_parsing.png``         (H, W) uint8 class ids (single-channel PNG, canonical frame);
- ``<key>_parsing_color.png``   (H, W, 3) uint8 preview colours;
- ``<key>_parsing_onehot.npy``  (H, W, C) uint8 0/1 (optional);
- ``<key>_parsing_soft.npy``    (H, W, C) float32 class shares summing to 1 per pixel (optional).

Class ids and ``C``: :mod:`face3d_data.parsing.classes`. Multi-view datalists
(``multiview_<split>.txt``) hold one group per line: the image paths of the views of one identity,
relative to the dataset folder, escaped and split exactly as :func:`face3d_data.io.datalist.read_datalist`
does. See docs/formats.md#parsing-maps and docs/formats.md#datalists.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.arrays import load_npy
from face3d_data.io.datalist import read_datalist
from face3d_data.io.images import read_image

#: suffix of each parsing output, by kind
PARSING_SUFFIXES = {"labels": "_parsing.png", "color": "_parsing_color.png",
                    "onehot": "_parsing_onehot.npy", "soft": "_parsing_soft.npy"}


def parsing_path(folder: str | os.PathLike, key: str, kind: str = "labels") -> str:
    """Path of a parsing output of sample ``key`` under ``folder`` (kinds: :data:`PARSING_SUFFIXES`)."""
    if kind not in PARSING_SUFFIXES:
        raise ValueError(f"kind: expected one of {sorted(PARSING_SUFFIXES)}, got {kind!r}")
    return os.path.join(os.fspath(folder), *(key + PARSING_SUFFIXES[kind]).split("/"))


def _n_classes() -> int:
    from face3d_data.parsing.classes import N_CLASSES

    return N_CLASSES


def read_label_map(path: str | os.PathLike, n_classes: int | None = None) -> np.ndarray:
    """Read a ``_parsing.png``: (H, W) uint8 class ids.

    Raises:
        InputError: missing or undecodable file, not single-channel 8-bit, or ids >= ``n_classes``
            (default: the class table's size).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "parsing map not found")
    data = np.fromfile(path, dtype=np.uint8)
    labels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if labels is None:
        raise InputError(path, "not a decodable image")
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise InputError(path, f"expected a single-channel 8-bit PNG of class ids, got {labels.dtype} {labels.shape}")
    n = _n_classes() if n_classes is None else int(n_classes)
    if labels.size and int(labels.max()) >= n:
        raise InputError(path, f"class id {int(labels.max())} outside 0..{n - 1}")
    return labels


def read_class_maps(path: str | os.PathLike, n_classes: int | None = None) -> np.ndarray:
    """Read a one-hot (uint8) or soft (float32) ``.npy``: (H, W, C), checked against the class table.

    Raises:
        InputError: wrong shape or dtype, values outside [0, 1], or (soft) rows not summing to 1.
    """
    array = load_npy(path)
    n = _n_classes() if n_classes is None else int(n_classes)
    if array.ndim != 3 or array.shape[-1] != n:
        raise InputError(path, f"expected (H, W, {n}) class maps, got shape {array.shape}")
    if array.dtype == np.uint8:
        if array.size and array.max() > 1:
            raise InputError(path, "one-hot maps must hold 0/1")
    elif array.dtype == np.float32:
        if not np.all(np.isfinite(array)) or array.min(initial=0) < 0 or array.max(initial=0) > 1:
            raise InputError(path, "soft maps must hold shares in [0, 1]")
        if array.size and np.abs(array.sum(-1) - 1).max() > 1e-4:
            raise InputError(path, "soft maps must sum to 1 over the classes")
    else:
        raise InputError(path, f"expected uint8 (one-hot) or float32 (soft) maps, got {array.dtype}")
    return array


def read_multiview(path: str | os.PathLike, root: str | os.PathLike, views: int | None = None) -> list[tuple[str, ...]]:
    """Read a ``multiview_<split>.txt``: one tuple of image paths (joined to ``root``) per group.

    Args:
        views: expected views per group (None: any, the same on every line).
    Raises:
        InputError: missing file, or a line with another number of views.
    """
    return read_datalist(path, root, columns=views)


def load_group(image_paths, parsing_dir: str | os.PathLike | None = None,
               data_root: str | os.PathLike | None = None) -> dict:
    """Load the views of one group as arrays of one batch element.

    Args:
        image_paths: the group's image paths (a row of :func:`read_multiview`); each has its
            300W-LP label ``.mat`` beside it.
        parsing_dir: the ``parsing`` stage's output folder for this dataset, or None.
        data_root: the dataset folder the keys are relative to (needed with ``parsing_dir``).
    Returns:
        ``{"images": (K, H, W, 3) uint8, "mat_paths": [K paths], "keys": [K keys] or None,
        "parsing": (K, H, W) uint8 or None}``. Labels are read with
        :func:`face3d_data.w300lp.read_labels` by the caller.
    Raises:
        InputError: a missing or bad file, or views of different sizes.
    """
    paths = [os.fspath(p) for p in image_paths]
    if not paths:
        raise ValueError("image_paths: a group needs at least one view")
    images = [read_image(p) for p in paths]
    if len({im.shape for im in images}) != 1:
        raise InputError(paths[0], f"the views of a group differ in size: {[im.shape for im in images]}")
    mats = [os.path.splitext(p)[0] + ".mat" for p in paths]
    for m in mats:
        if not os.path.isfile(m):
            raise InputError(m, "label file of a view not found")
    keys = parsing = None
    if parsing_dir is not None:
        if data_root is None:
            raise ValueError("data_root: needed to find parsing maps by key")
        keys = [os.path.splitext(os.path.relpath(p, os.fspath(data_root)))[0].replace(os.sep, "/") for p in paths]
        parsing = np.stack([read_label_map(parsing_path(parsing_dir, k)) for k in keys])
        if parsing.shape[1:] != images[0].shape[:2]:
            raise InputError(parsing_path(parsing_dir, keys[0]),
                             f"parsing map {parsing.shape[1:]} and image {images[0].shape[:2]} differ in size")
    return {"images": np.stack(images), "mat_paths": mats, "keys": keys, "parsing": parsing}
