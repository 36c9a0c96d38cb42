"""Checks of position maps: keypoint error (NME) and holes inside the face mask."""

from __future__ import annotations

import numpy as np


def landmark_nme(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Normalised mean error of 2D keypoints.

    Args:
        predicted, truth: (K, 2+) points in the same frame (only x, y are used).

    Returns:
        (nme, errors): ``mean(errors) / sqrt(w·h)`` of the truth's bounding box (the AFLW2000-3D
        normalisation), and the (K,) float64 per-point Euclidean errors.
    """
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    if p.ndim != 2 or p.shape[0] != t.shape[0] or p.shape[1] < 2 or t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"predicted and truth must be (K, 2+) with equal K, got {p.shape}, {t.shape}")
    errors = np.linalg.norm(p[:, :2] - t[:, :2], axis=1)
    extent = t[:, :2].max(axis=0) - t[:, :2].min(axis=0)
    size = float(np.sqrt(max(extent[0] * extent[1], 1e-12)))
    return float(errors.mean() / size), errors


def posmap_defects(posmap: np.ndarray, face_mask: np.ndarray) -> tuple[int, int]:
    """(holes, non_finite): face-mask texels whose three values are all 0, and NaN/inf values."""
    pos = np.asarray(posmap)
    mask = np.asarray(face_mask, bool)
    if pos.ndim != 3 or pos.shape[:2] != mask.shape or pos.shape[2] != 3:
        raise ValueError(f"posmap must be (R, R, 3) matching face_mask {mask.shape}, got {pos.shape}")
    inside = pos[mask]
    holes = int(np.count_nonzero(np.all(inside == 0, axis=1)))
    return holes, int(pos.size - np.count_nonzero(np.isfinite(pos)))
