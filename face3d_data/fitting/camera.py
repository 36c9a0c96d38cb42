"""Scaled-orthographic camera from 2D-3D correspondences, batched.

The camera is estimated the Gold Standard way (Hartley & Zisserman, Alg. 7.2, affine case): both
point sets are normalised (zero weighted mean; mean distance √2 in 2D, √3 in 3D), the 2×3 affine
matrix is a weighted linear least-squares solve (the translation vanishes for centred points),
then denormalised. The affine matrix is then projected onto the nearest *scaled rotation* with an
SVD (``P = U Σ Vᵀ`` → rows ``U Vᵀ``, scale = mean singular value), so the rotation is always
orthonormal with det +1 — unlike face3d's ``P2sRt``, which only normalises the rows.

Frame: the 2D points are in the 300W-LP Matlab frame (1-based, y up), so that
``x ≈ s · R[:2] · X + t`` with ``R`` the 300W-LP rotation (see :mod:`face3d_data.w300lp.pose`).
"""

from __future__ import annotations

import numpy as np


def _weighted_mean(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, n, d), (B, n) -> (B, d)."""
    return np.einsum("bn,bnd->bd", weights, points) / weights.sum(axis=1)[:, None]


def estimate_scaled_orthographic(points2d: np.ndarray, points3d: np.ndarray, weights: np.ndarray):
    """Fit ``points2d ≈ s · R[:2] · points3d + t`` for a batch of faces.

    Args:
        points2d: (B, n, 2) float64 image points (Matlab frame, y up); rows with weight 0 ignored
            (they may hold any finite value).
        points3d: (B, n, 3) float64 model-space points.
        weights: (B, n) float64 >= 0, at least 4 positive per face.
    Returns:
        ``(s (B,), R (B, 3, 3), t (B, 2))``: scale, 300W-LP rotation (orthonormal, det +1) and
        the 2D translation that is optimal for that ``s, R``.
    """
    mean2 = _weighted_mean(points2d, weights)
    mean3 = _weighted_mean(points3d, weights)
    c2 = points2d - mean2[:, None]
    c3 = points3d - mean3[:, None]
    wsum = weights.sum(axis=1)
    # Normalising scales (Gold Standard): mean distance to the centroid -> √2 (2D) and √3 (3D).
    s2 = np.sqrt(2.0) * wsum / np.einsum("bn,bn->b", weights, np.linalg.norm(c2, axis=2))
    s3 = np.sqrt(3.0) * wsum / np.einsum("bn,bn->b", weights, np.linalg.norm(c3, axis=2))
    n2 = c2 * s2[:, None, None]
    n3 = c3 * s3[:, None, None]
    # Weighted normal equations (3 x 3, shared by the x and y rows): (X^T W X) P^T = X^T W x.
    wn3 = n3 * weights[..., None]
    gram = np.einsum("bni,bnj->bij", wn3, n3)
    rhs = np.einsum("bni,bnj->bij", wn3, n2)
    affine_n = np.swapaxes(np.linalg.solve(gram, rhs), 1, 2)  # (B, 2, 3), normalised frames
    affine = affine_n * (s3 / s2)[:, None, None]
    # Nearest scaled rotation: P = U diag(σ) V^T -> R[:2] = U V^T, s = mean(σ).
    u, sigma, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    scale = sigma.mean(axis=1)
    rotation = np.empty(rows.shape[:1] + (3, 3))
    rotation[:, :2] = rows
    rotation[:, 2] = np.cross(rows[:, 0], rows[:, 1])
    t = mean2 - scale[:, None] * np.einsum("bij,bj->bi", rows, mean3)
    return scale, rotation, t


def camera_jacobian(scale: np.ndarray, rotation: np.ndarray, points3d: np.ndarray) -> np.ndarray:
    """Derivative of ``s·R[:2]·X + t`` w.r.t. a small camera update, at the current camera.

    The update ``(δ, ω, τ)`` maps ``s → s·(1+δ)``, ``R → R·exp([ω]×)`` (rotation in model
    space), ``t → t + τ``.

    Args:
        scale: (B,); rotation: (B, 3, 3); points3d: (B, n, 3) model-space points.
    Returns:
        (B, n, 2, 6) float64 Jacobian, columns (δ, ωx, ωy, ωz, τx, τy).
    """
    n_faces, n = points3d.shape[:2]
    proj = rotation[:, :2] * scale[:, None, None]                       # (B, 2, 3) = s·M
    jac = np.zeros((n_faces, n, 2, 6))
    for p in range(2):
        row = proj[:, None, p]                                           # (B, 1, 3)
        jac[..., p, 0] = (points3d * row).sum(axis=2)
        # d/dω of m·(X + ω×X) = m·(ω×X) = ω·(X×m)
        jac[..., p, 1:4] = np.cross(points3d, row)
    jac[..., 0, 4] = 1.0
    jac[..., 1, 5] = 1.0
    return jac


def apply_camera_update(scale, rotation, translation, update):
    """Apply ``update`` (B, 6) = (δ, ωx, ωy, ωz, τx, τy) from :func:`camera_jacobian`.

    Returns the new ``(scale (B,), rotation (B, 3, 3) orthonormal, translation (B, 2))``.
    """
    omega = update[:, 1:4]
    angle = np.linalg.norm(omega, axis=1)
    safe = np.where(angle > 0, angle, 1.0)
    axis = omega / safe[:, None]
    k = np.zeros((len(update), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - np.swapaxes(k, 1, 2)
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    step = np.eye(3) + sin * k + (1 - cos) * (k @ k)                   # Rodrigues
    return scale * (1.0 + update[:, 0]), rotation @ step, translation + update[:, 4:6]
