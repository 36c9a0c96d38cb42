"""Square face crops from 68 landmarks (PRNet training recipe), seeded and recorded.

The box: the landmarks' bounding box ``[left, right] × [top, bottom]``, ``old_size`` = the mean of
its width and height, centre = its centre; side = ``scale · old_size`` (1.5 by default). Training
jitter, drawn from the caller's generator: centre += ``U(-j, j)·old_size`` per axis (j = 0.1) and
side ×= ``U(lo, hi)`` (0.9–1.1). No integer truncation (PRNet truncates to int).

The crop map sends the box's top-left corner to crop pixel (0, 0) and its bottom-right corner to
(R-1, R-1): ``p_crop = k·(p - centre) + (R-1)/2`` with ``k = (R-1)/side``, no rotation; z scales by
the same ``k``. Frames: canonical (0-based, y down, pixel centres at integers) on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, eq=False)
class CropBox:
    """A square crop in the canonical frame of the source image.

    Attributes:
        center: (2,) float64 (x, y).
        size: side length in source pixels.
        jitter: (dx, dy, scale) as drawn: centre shift in units of ``old_size`` and the side
            factor; (0, 0, 1) when no jitter was applied.
    """

    center: np.ndarray
    size: float
    jitter: tuple[float, float, float] = (0.0, 0.0, 1.0)


def landmark_crop_box(points: np.ndarray, scale: float = 1.5, rng: np.random.Generator | None = None,
                      center_jitter: float = 0.1, size_jitter: tuple[float, float] = (0.9, 1.1)
                      ) -> CropBox:
    """The training crop box around landmarks (module docstring).

    Args:
        points: (K, 2+) canonical landmark coordinates (z ignored), all finite.
        scale: box side / landmark box size.
        rng: draws the jitter; ``None`` = no jitter (evaluation).
        center_jitter: maximum centre shift, fraction of the landmark box size.
        size_jitter: (low, high) range of the side factor.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2 or len(pts) < 2:
        raise ValueError(f"points must have shape (K>=2, 2 or 3), got {pts.shape}")
    if not np.all(np.isfinite(pts[:, :2])):
        raise ValueError("points contain NaN/inf")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
    old_size = float(((hi - lo).sum()) / 2.0)
    if old_size <= 0:
        raise ValueError("points: the landmarks span no area")
    center = (lo + hi) / 2.0
    jitter = (0.0, 0.0, 1.0)
    if rng is not None:
        low, high = (float(v) for v in size_jitter)
        if not 0 < low <= high:
            raise ValueError(f"size_jitter must be 0 < low <= high, got {size_jitter!r}")
        dx, dy = rng.uniform(-center_jitter, center_jitter, size=2)
        jitter = (float(dx), float(dy), float(rng.uniform(low, high)))
        center = center + np.array(jitter[:2]) * old_size
    return CropBox(center=center, size=scale * old_size * jitter[2], jitter=jitter)


def crop_matrix(box: CropBox, resolution: int) -> np.ndarray:
    """(2, 3) float64 affine: canonical source pixels → crop pixels (module docstring)."""
    k = (resolution - 1) / float(box.size)
    half = (resolution - 1) / 2.0
    return np.array([[k, 0.0, half - k * box.center[0]],
                     [0.0, k, half - k * box.center[1]]])


def crop_image(image: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """Resample ``image`` (H, W, C) into an (R, R, C) crop under ``matrix`` (bilinear, 0 outside)."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got {image.shape}")
    return cv2.warpAffine(image, np.asarray(matrix, np.float64), (resolution, resolution),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
