"""Validation of the arrays given to :func:`face3d_data.fitting.fit_landmarks`.

Every problem is reported as a ``ValueError`` naming the argument (and, for a batch, the face
index), before any linear algebra runs.
"""

from __future__ import annotations

import numpy as np

#: Fewest usable (finite, positively weighted) landmarks a face needs: 6 points give 12 equations
#: for the 8 unknowns of the affine camera with some redundancy.
MIN_POINTS = 6

#: Spread below this fraction of the landmark extent counts as degenerate (collinear points).
_COLLINEAR_RATIO = 1e-3


def check_landmarks(landmarks) -> tuple[np.ndarray, bool]:
    """Return ``(points (B, 68, 2) float64, batched)``; NaN marks a missing point (kept as NaN).

    Raises ValueError for a wrong shape, a non-numeric array or infinite values.
    """
    try:
        pts = np.array(landmarks, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("landmarks: expected a numeric (68, 2) or (B, 68, 2) array") from None
    batched = pts.ndim == 3
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"landmarks: expected shape (68, 2) or (B, 68, 2), got {np.shape(landmarks)}")
    if pts.shape[0] == 0:
        raise ValueError("landmarks: the batch is empty")
    if np.any(np.isinf(pts)):
        faces = np.unique(np.nonzero(np.isinf(pts))[0])
        raise ValueError(f"landmarks: infinite values (face(s) {faces[:5].tolist()}); "
                         "mark missing points with NaN")
    missing = np.isnan(pts).any(axis=2)
    pts[missing] = np.nan
    return pts, batched


def check_weights(weights, n_faces: int) -> np.ndarray:
    """Per-landmark weights -> (B, 68) float64 >= 0; ``None`` means all ones."""
    if weights is None:
        return np.ones((n_faces, 68))
    try:
        w = np.array(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("weights: expected a numeric (68,) or (B, 68) array") from None
    if w.shape == (68,):
        w = np.broadcast_to(w, (n_faces, 68)).copy()
    if w.shape != (n_faces, 68):
        raise ValueError(f"weights: expected shape (68,) or ({n_faces}, 68), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights: must be finite and non-negative")
    return w


def check_image_hw(image_hw) -> tuple[int, int]:
    """``(height, width)`` of the image the landmarks live in, both positive."""
    hw = np.asarray(image_hw).ravel()
    if hw.size < 2 or not np.all(np.isfinite(hw[:2].astype(np.float64))) or np.any(hw[:2] <= 0):
        raise ValueError(f"image_hw: expected (height, width) > 0, got {image_hw!r}")
    return int(hw[0]), int(hw[1])


def usable_weights(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weights with missing (NaN) points zeroed, after checking every face is well posed.

    Args:
        points: (B, 68, 2) canonical frame, NaN = missing.
        weights: (B, 68) non-negative.
    Returns:
        (B, 68) float64 weights; 0 for missing points.
    Raises:
        ValueError naming the face when it has fewer than ``MIN_POINTS`` usable points, or its
        usable points are coincident or collinear.
    """
    w = np.where(np.isnan(points[..., 0]), 0.0, weights)
    used = w > 0
    counts = used.sum(axis=1)
    for b in np.nonzero(counts < MIN_POINTS)[0][:1]:
        raise ValueError(f"landmarks[{b}]: only {counts[b]} usable points (finite, weight > 0); "
                         f"need at least {MIN_POINTS}")
    filled = np.where(used[..., None], points, 0.0)
    wsum = w.sum(axis=1)[:, None]
    mean = (w[..., None] * filled).sum(axis=1) / wsum
    d = np.where(used[..., None], filled - mean[:, None], 0.0)
    cov = np.einsum("bn,bni,bnj->bij", w, d, d) / wsum[..., None]
    eig = np.linalg.eigvalsh(cov)  # ascending, (B, 2)
    for b in np.nonzero(eig[:, 1] <= 1e-12)[0][:1]:
        raise ValueError(f"landmarks[{b}]: all usable points coincide")
    for b in np.nonzero(eig[:, 0] <= (_COLLINEAR_RATIO ** 2) * eig[:, 1])[0][:1]:
        raise ValueError(f"landmarks[{b}]: the usable points are (nearly) collinear")
    return w
