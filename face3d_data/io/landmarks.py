"""Landmark files: plain ``.txt`` (canonical frame) and iBUG ``.pts`` (1-based).

- ``.txt``: one ``x y`` row per point, canonical frame (0-based, y down). This is what
  ``data_preparation.py`` writes (Deep3DFaceRecon's y-up files are converted with
  :func:`face3d_data.coords.deep3d_to_canonical`).
- ``.pts``: the iBUG format (``version: 1``, ``n_points: 68``, ``{`` … ``}``), 1-based pixel
  coordinates with y down; converted to the canonical frame on read.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_text


def read_landmarks(path: str | os.PathLike, count: int | None = 68) -> np.ndarray:
    """Read a landmark file into the canonical frame.

    Args:
        path: ``.txt`` (``x y`` rows, canonical) or ``.pts`` (iBUG, 1-based).
        count: expected number of points (``None``: any).

    Returns:
        ``(K, 2) float64`` points, canonical frame (0-based, y down).

    Raises:
        InputError: missing or malformed file, wrong number of points, NaN/inf.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        raise InputError(path, "landmark file not found") from None
    if path.lower().endswith(".pts"):
        points = _parse_pts(path, text) - 1.0
    else:
        points = _parse_rows(path, text.splitlines())
    if count is not None and len(points) != count:
        raise InputError(path, f"expected {count} landmarks, found {len(points)}")
    if not np.all(np.isfinite(points)):
        raise InputError(path, "landmarks contain NaN/inf values")
    return points


def _parse_rows(path: str, lines: list[str]) -> np.ndarray:
    rows = []
    for number, line in enumerate(lines, 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(path, f"line {number}: expected 2 numbers 'x y', found {len(fields)}")
        try:
            rows.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise InputError(path, f"line {number}: not a number: {line.strip()!r}") from None
    if not rows:
        raise InputError(path, "landmark file is empty")
    return np.asarray(rows, dtype=np.float64)


def _parse_pts(path: str, text: str) -> np.ndarray:
    try:
        start = text.index("{")
        end = text.index("}", start)
    except ValueError:
        raise InputError(path, "not an iBUG .pts file (no '{ ... }' block)") from None
    points = _parse_rows(path, text[start + 1:end].splitlines())
    for line in text[:start].splitlines():
        if line.strip().lower().startswith("n_points"):
            declared = int(line.split(":")[1])
            if declared != len(points):
                raise InputError(path, f"header says n_points: {declared} but {len(points)} points follow")
    return points


def write_landmarks_txt(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write ``(K, 2)`` canonical-frame points as ``x y`` rows (6 decimals), atomically."""
    points = _check_points(points)
    write_text(path, "".join(f"{x:.6f} {y:.6f}\n" for x, y in points))


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write ``(K, 2)`` canonical-frame points as an iBUG ``.pts`` file (1-based), atomically."""
    points = _check_points(points) + 1.0
    body = "".join(f"{x:.6f} {y:.6f}\n" for x, y in points)
    write_text(path, f"version: 1\nn_points: {len(points)}\n{{\n{body}}}\n")


def _check_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be (K, 2), got shape {points.shape}")
    return points
