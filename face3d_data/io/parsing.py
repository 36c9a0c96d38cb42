"""Readers for the parsing stage's maps and for multi-view datalists, so a trainer can load a group.

File names (one place; the ``parsing`` stage writes them under its ``--out`` for the sample
``<key>`` = the sample's path relative to the dataset root, without extension):

- ``<key>_parsing.png``         (H, W) uint8 class ids (single-channel PNG, canonical frame);
- ``<key>_parsing_color.png``   (H, W, 3) uint8 preview colours;
- ``<key>_parsing_onehot.npy``  (H, W, C) uint8 0/1 (optional);
- ``<key>_parsing_soft.npy``    (H, W, C) float32 class shares summing to 1 per pixel (optional).

Class ids and ``C``: :mod:`face3d_data.parsing.classes`.

Multi-view datalists (``multiview_<split>.txt``, written by ``synth_300wlp --views K`` with
:func:`write_multiview`) hold one group per line: for each view of one identity, in view order,
its image path then its 300W-LP label (``.mat``) path, i.e. ``<v0>.jpg <v0>.mat <v1>.jpg <v1>.mat
…`` (2K columns), relative to the dataset folder, percent-escaped and split exactly as
:func:`face3d_data.io.datalist.read_datalist` does. :func:`read_multiview` also reads lists of image
paths alone (K columns; each label is then the ``.mat`` beside its image). See
docs/formats.md#parsing-maps and docs/formats.md#datalists.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.arrays import load_npy
from face3d_data.io.datalist import read_datalist, write_datalist
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


def write_multiview(path: str | os.PathLike, groups, root: str | os.PathLike) -> int:
    """Write a multi-view datalist: one line per group, ``image label`` per view in order.

    Args:
        groups: per group, a sequence of (image path, label ``.mat`` path) per view; every group
            must have the same number of views.
        root: the folder the paths are written relative to (the dataset folder).
    Returns:
        The number of groups (lines) written.
    Raises:
        ValueError: an empty group, groups of different sizes, or a view that is not a pair.
    """
    rows, size = [], None
    for group in groups:
        views = [tuple(view) for view in group]
        if not views or any(len(view) != 2 for view in views):
            raise ValueError("groups: each group needs (image, label) pairs, one per view")
        if size is not None and len(views) != size:
            raise ValueError(f"groups: every group needs the same number of views ({size}), got {len(views)}")
        size = len(views)
        rows.append([p for view in views for p in view])
    return write_datalist(path, rows, root)


def _is_label(path: str) -> bool:
    return path.lower().endswith(".mat")


def read_multiview(path: str | os.PathLike, root: str | os.PathLike, views: int | None = None,
                   labels: bool = False) -> list[tuple]:
    """Read a ``multiview_<split>.txt``: one group of views (paths joined to ``root``) per line.

    Lines are either ``image label`` pairs per view (what :func:`write_multiview` writes) or image
    paths alone (labels are then the ``.mat`` beside each image); a list is one or the other.

    Args:
        views: expected views per group (None: any, the same on every line).
        labels: False: each group is a tuple of its K image paths; True: a tuple of K
            ``(image, label)`` pairs. Either is a row :func:`load_group` takes.
    Raises:
        InputError: missing file, lines of different lengths, a label path where an image
            belongs (or the reverse), or a line with another number of views.
    """
    rows = read_datalist(path, root)
    paired = bool(rows) and len(rows[0]) % 2 == 0 and all(
        all(_is_label(c) for c in row[1::2]) and not any(_is_label(c) for c in row[0::2]) for row in rows)
    groups = []
    for number, row in enumerate(rows, 1):
        if paired:
            pairs = tuple(zip(row[0::2], row[1::2]))
        elif any(_is_label(c) for c in row):
            raise InputError(path, f"line {number}: expected image paths, or 'image label' pairs "
                                   "(.mat labels in every second column)")
        else:
            pairs = tuple((c, os.path.splitext(c)[0] + ".mat") for c in row)
        if views is not None and len(pairs) != int(views):
            raise InputError(path, f"line {number}: expected {int(views)} view(s), found {len(pairs)}")
        groups.append(pairs if labels else tuple(image for image, _ in pairs))
    return groups


def load_group(image_paths, parsing_dir: str | os.PathLike | None = None,
               data_root: str | os.PathLike | None = None) -> dict:
    """Load the views of one group as arrays of one batch element.

    Args:
        image_paths: a row of :func:`read_multiview`: the group's image paths (each with its
            300W-LP label ``.mat`` beside it), or its ``(image, label)`` pairs.
        parsing_dir: the ``parsing`` stage's output folder for this dataset, or None.
        data_root: the dataset folder the keys are relative to (needed with ``parsing_dir``).
    Returns:
        ``{"images": (K, H, W, 3) uint8, "mat_paths": [K paths], "keys": [K keys] or None,
        "parsing": (K, H, W) uint8 or None}``. Labels are read with
        :func:`face3d_data.w300lp.read_labels` by the caller.
    Raises:
        InputError: a missing or bad file, or views of different sizes.
    """
    views = [tuple(os.fspath(q) for q in v) if isinstance(v, (tuple, list)) else (os.fspath(v),)
             for v in image_paths]
    if not views:
        raise ValueError("image_paths: a group needs at least one view")
    if any(len(v) not in (1, 2) for v in views):
        raise ValueError("image_paths: each view is an image path or an (image, label) pair")
    paths = [v[0] for v in views]
    mats = [v[1] if len(v) == 2 else os.path.splitext(v[0])[0] + ".mat" for v in views]
    images = [read_image(p) for p in paths]
    if len({im.shape for im in images}) != 1:
        raise InputError(paths[0], f"the views of a group differ in size: {[im.shape for im in images]}")
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
