"""PRNet augmentation: one random similarity applied jointly to a crop and its position map,
then colour scaling and random erasing of the image only.

Frames: the crop and the position map's x, y are in the crop's canonical pixel frame (x right,
y down, pixel centres at integers); z is larger = closer, in the same pixel units.

The similarity about the crop centre ``c = ((R-1)/2, (R-1)/2)`` maps a point ``p`` to
``p' = c + s·Rot(θ)·(p - c) + t`` with ``Rot(θ) = [[cos θ, sin θ], [-sin θ, cos θ]]`` (positive θ
turns the face counter-clockwise as displayed). The image is resampled so that the pixel at ``p``
moves to ``p'`` (bilinear, black outside); every covered texel of the position map gets
``(x', y') = p'`` and ``z' = s·z`` (the generator scales z with the crop, so a scaled crop has the
label it would have had if cut at that size). Texels that are exactly 0 (uncovered) stay 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges (PRNet paper's: rotation ±45°, shift 10 %, scale 0.9–1.2,
    channel scaling 0.6–1.4, synthetic occlusion)."""

    p_rotate: float = 0.5
    max_rotate_deg: float = 45.0
    p_shift: float = 0.5
    max_shift: float = 0.1              # fraction of the crop side, per axis
    p_scale: float = 0.5
    scale_range: tuple = (0.9, 1.2)
    p_color: float = 0.5
    color_range: tuple = (0.6, 1.4)
    p_erase: float = 0.25
    erase_count: tuple = (1, 3)
    erase_area: tuple = (0.02, 0.3)     # fraction of the crop area, per rectangle
    erase_aspect: tuple = (0.3, 3.3)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> AugmentConfig:
        """From the ``aug_*`` keys of a task configuration (missing keys keep their defaults)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in cfg.items():
            if key.startswith("aug_") and key[4:] in names:
                kwargs[key[4:]] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def check(self) -> None:
        """Raise ValueError on out-of-range settings."""
        for name in ("p_rotate", "p_shift", "p_scale", "p_color", "p_erase"):
            if not 0 <= float(getattr(self, name)) <= 1:
                raise ValueError(f"aug_{name} must be a probability in [0, 1]")
        for name in ("scale_range", "color_range", "erase_count", "erase_area", "erase_aspect"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"aug_{name} must be [lo, hi] with 0 < lo <= hi")


def similarity(size: int, angle_deg: float = 0.0, scale: float = 1.0,
               shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(2, 3) float64 forward map ``p' = c + s·Rot(θ)·(p - c) + t`` of an R×R crop (module docstring)."""
    c = (size - 1) / 2.0
    t = np.radians(angle_deg)
    rot = scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    offset = np.array([c, c]) - rot @ np.array([c, c]) + np.asarray(shift, np.float64)
    return np.concatenate([rot, offset[:, None]], axis=1)


def draw_similarity(rng: np.random.Generator, size: int, aug: AugmentConfig) -> tuple[np.ndarray, float]:
    """A random similarity (``(2, 3)`` matrix, scale) from the configured probabilities and ranges."""
    angle = rng.uniform(-aug.max_rotate_deg, aug.max_rotate_deg) if rng.random() < aug.p_rotate else 0.0
    scale = rng.uniform(*aug.scale_range) if rng.random() < aug.p_scale else 1.0
    shift = (rng.uniform(-aug.max_shift, aug.max_shift, 2) * size) if rng.random() < aug.p_shift else (0.0, 0.0)
    return similarity(size, angle, scale, tuple(shift)), float(scale)


def warp_pair(image: np.ndarray, posmap: np.ndarray, matrix: np.ndarray,
              scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Apply a similarity to a crop and its position map.

    Args:
        image: (R, R, 3) uint8 or float32 crop. posmap: (R, R, 3) float32, crop pixels.
        matrix: (2, 3) forward map (:func:`similarity`); scale: its scale factor (for z).

    Returns:
        (warped image, same dtype; warped position map, float32).
    """
    size = image.shape[1], image.shape[0]
    out = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    pos = np.asarray(posmap, np.float32)
    covered = np.any(pos != 0, axis=-1)
    xy = pos[..., :2].astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    new = np.empty_like(pos)
    new[..., :2] = xy
    new[..., 2] = pos[..., 2] * scale
    new[~covered] = 0
    return out, new


def color_scale(image: np.ndarray, rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray:
    """(R, R, 3) float32 in [0, 1]: each channel multiplied by a factor in ``color_range``, clipped."""
    factors = rng.uniform(*aug.color_range, 3).astype(np.float32)
    return np.clip(image * factors, 0.0, 1.0)


def random_erase(image: np.ndarray, rng: np.random.Generator, aug: AugmentConfig) -> np.ndarray:
    """Paste 1–3 rectangles of uniform noise (synthetic occlusion) into a float32 [0, 1] image."""
    out = image.copy()
    h, w = out.shape[:2]
    for _ in range(int(rng.integers(aug.erase_count[0], aug.erase_count[1] + 1))):
        area = rng.uniform(*aug.erase_area) * h * w
        aspect = np.exp(rng.uniform(np.log(aug.erase_aspect[0]), np.log(aug.erase_aspect[1])))
        eh = int(min(h, max(1, round(np.sqrt(area * aspect)))))
        ew = int(min(w, max(1, round(np.sqrt(area / aspect)))))
        y0, x0 = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
        out[y0:y0 + eh, x0:x0 + ew] = rng.random((eh, ew, out.shape[2]), dtype=np.float32)
    return out


def augment_pair(image: np.ndarray, posmap: np.ndarray, rng: np.random.Generator,
                 aug: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Full PRNet augmentation of one sample.

    Args:
        image: (R, R, 3) uint8 crop. posmap: (R, R, 3) float32 label.

    Returns:
        ((R, R, 3) float32 image in [0, 1], (R, R, 3) float32 label). The draws are taken from
        ``rng`` in a fixed order, so equal generators give equal results.
    """
    matrix, scale = draw_similarity(rng, image.shape[0], aug)
    img, pos = warp_pair(image, posmap, matrix, scale)
    img = img.astype(np.float32) / 255.0
    if rng.random() < aug.p_color:
        img = color_scale(img, rng, aug)
    if rng.random() < aug.p_erase:
        img = random_erase(img, rng, aug)
    return img, pos
