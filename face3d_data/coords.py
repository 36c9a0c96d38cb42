"""Image-frame conventions of the 3D-face ecosystem and exact converters to the canonical frame.

**Canonical frame** (used everywhere inside face3d-data): 0-based, pixel centres at integer
coordinates, x right, y down; pixel ``(x, y)`` is ``image[y, x]``. Projected vertices carry z with
larger = closer to the camera.

Other frames met in files (all functions take ``(..., 2)`` or ``(..., 3)`` arrays and touch only
x and y; z passes through unchanged; the input is never modified):

===================================  ===========================  ===============================
frame                                to canonical                 used by
===================================  ===========================  ===============================
Matlab projection (1-based, y up)    x-1, h-y                     300W-LP / 3DDFA ``f·R·S + t``
``pt2d`` (1-based, y down)           x-1, y-1  (-1 → NaN)         300W-LP ``pt2d``, AFLW2000 ``pt3d_68``
Deep3DFaceRecon (0-based, y up)      x, h-1-y                     Deep3DFaceRecon ``landmarks/*.txt``
face3d ``to_image`` (y' = h-1-y)     x-1, y+1                     face3d / PRNet generators
===================================  ===========================  ===============================

The face3d generators apply ``y' = h - 1 - y`` to the Matlab projection without subtracting 1
from x, so their pixel coordinates are ``(x_m, h - 1 - y_m)`` = ``canonical + (1, -1)``: one pixel
off in both axes. We convert it exactly.
"""

from __future__ import annotations

import numpy as np


def _xy(points) -> np.ndarray:
    points = np.array(points, dtype=np.float64 if np.asarray(points).dtype.kind in "iub"
                      else np.asarray(points).dtype, copy=True)
    if points.ndim < 1 or points.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (..., 2) or (..., 3), got {points.shape}")
    return points


def _check_height(height) -> float:
    height = float(height)
    if not np.isfinite(height) or height <= 0:
        raise ValueError(f"image height must be a positive number, got {height}")
    return height


def matlab_to_canonical(points, height) -> np.ndarray:
    """300W-LP / 3DDFA Matlab projection frame (1-based, y up) → canonical."""
    h = _check_height(height)
    p = _xy(points)
    p[..., 0] -= 1.0
    p[..., 1] = h - p[..., 1]
    return p


def canonical_to_matlab(points, height) -> np.ndarray:
    """Canonical → 300W-LP / 3DDFA Matlab projection frame (1-based, y up)."""
    h = _check_height(height)
    p = _xy(points)
    p[..., 0] += 1.0
    p[..., 1] = h - p[..., 1]
    return p


def pt2d_to_canonical(points) -> np.ndarray:
    """300W-LP ``pt2d`` / AFLW2000 ``pt3d_68`` (1-based, y down) → canonical.

    Points stored as ``-1`` (AFLW2000's "missing") become NaN.
    """
    p = _xy(points).astype(np.float64)
    missing = np.all(p[..., :2] == -1.0, axis=-1)
    p[..., :2] -= 1.0
    p[missing, :2] = np.nan
    return p


def canonical_to_pt2d(points) -> np.ndarray:
    """Canonical → 1-based y-down (``pt2d``); NaN points become ``-1``."""
    p = _xy(points).astype(np.float64)
    missing = np.any(~np.isfinite(p[..., :2]), axis=-1)
    p[..., :2] += 1.0
    p[missing, :2] = -1.0
    return p


def deep3d_to_canonical(points, height) -> np.ndarray:
    """Deep3DFaceRecon landmark frame (0-based, y up: ``y = H - 1 - y_down``) → canonical."""
    h = _check_height(height)
    p = _xy(points)
    p[..., 1] = h - 1.0 - p[..., 1]
    return p


def canonical_to_deep3d(points, height) -> np.ndarray:
    """Canonical → Deep3DFaceRecon landmark frame (0-based, y up)."""
    return deep3d_to_canonical(points, height)  # the flip is its own inverse


def face3d_to_canonical(points, height) -> np.ndarray:
    """face3d / PRNet generator frame (Matlab x kept, ``y = h - 1 - y_m``) → canonical."""
    _check_height(height)
    p = _xy(points)
    p[..., 0] -= 1.0
    p[..., 1] += 1.0
    return p


def canonical_to_face3d(points, height) -> np.ndarray:
    """Canonical → face3d / PRNet generator frame."""
    _check_height(height)
    p = _xy(points)
    p[..., 0] += 1.0
    p[..., 1] -= 1.0
    return p
