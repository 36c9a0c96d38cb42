"""Where the 68 landmarks of a photo come from: the landmark files beside it, in order.

For an image ``<root>/<rel>/<stem>.<ext>`` the first file that exists is used:

1. ``<root>/landmarks/<rel>/<stem>.txt`` — 68 ``x y`` rows, canonical frame (what the
   ``data_preparation`` stage writes);
2. ``<stem>.txt`` beside the image (same format), then iBUG ``<stem>.pts`` (1-based);
3. ``<stem>.mat`` beside the image: ``pt3d_68`` (3, 68), else ``pt2d`` (2, 68) (300W-LP frames,
   converted by :mod:`face3d_data.w300lp.labels`; -1 = missing).
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.errors import InputError
from face3d_data.io import read_landmarks, read_mat
from face3d_data.w300lp.labels import points_to_canonical

#: Landmark source kinds, in the order they are looked for.
SOURCE_KINDS = ("landmarks_txt", "txt", "pts", "mat")


def find_landmark_file(root: str, rel_image: str) -> tuple[str, str] | None:
    """``(kind, path)`` of the first landmark file of image ``rel_image`` (relative to ``root``), or None."""
    stem = os.path.splitext(rel_image)[0]
    beside = os.path.join(root, stem)
    for kind, path in (("landmarks_txt", os.path.join(root, "landmarks", stem + ".txt")),
                       ("txt", beside + ".txt"), ("pts", beside + ".pts"), ("mat", beside + ".mat")):
        if os.path.isfile(path):
            return kind, path
    return None


def read_landmark_source(kind: str, path: str) -> np.ndarray:
    """(68, 2) float64 canonical landmarks (NaN = missing) from a file of :func:`find_landmark_file`.

    Raises:
        InputError: naming the file.
    """
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind: expected one of {SOURCE_KINDS}, got {kind!r}")
    if kind != "mat":
        return read_landmarks(path, count=68)
    fields = read_mat(path)
    for name in ("pt3d_68", "pt2d"):
        if name in fields:
            arr = np.asarray(fields[name], np.float64)
            if arr.ndim == 2 and arr.shape[1] == 68 and arr.shape[0] in (2, 3):
                return points_to_canonical(arr[:2].T)
    raise InputError(path, "no 68-point 'pt3d_68' (3, 68) or 'pt2d' (2, 68) field")
