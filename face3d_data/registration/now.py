"""NoW-style scan-to-mesh error (the protocol of the NoW benchmark, re-implemented).

1. Crop the scan around the nose: with the 7 landmarks (outer eye corners 0/3, inner 1/2, nose
   bottom 4, mouth corners 5/6; :data:`face3d_data.registration.landmarks.NOW7_IBUG`), the nose
   bridge is the mean of the inner corners, the centre is ``nose_bottom + 0.3 (bridge −
   nose_bottom)`` and the radius ``1.4 (‖outer0 − outer3‖ + ‖bridge − nose_bottom‖) / 2``.
2. Align the predicted mesh to the scan: similarity from its 7 landmarks (no reflection, unlike
   NoW's Procrustes), then refine scale, rotation and translation to minimise the scan-to-mesh
   distance (Gauss–Newton on the point-to-plane linearisation; NoW uses chumpy's CG, so numbers
   are close to, not bit-identical with, the official tool's).
3. Error: distance of every cropped scan vertex to the closest point of the aligned predicted
   surface; median / mean / std in mm.

Frames: everything in the scan's frame, in mm (convert units first).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from face3d_data.registration.landmarks import apply_similarity, similarity
from face3d_data.registration.surface import ClosestPoints, face_normals


def now_crop(scan_vertices: np.ndarray, lm7: np.ndarray) -> np.ndarray:
    """(V,) bool scan vertices inside the NoW crop sphere defined by ``lm7`` (7, 3)."""
    lm = np.asarray(lm7, np.float64)
    bridge = 0.5 * (lm[1] + lm[2])
    centre = lm[4] + 0.3 * (bridge - lm[4])
    radius = 1.4 * (np.linalg.norm(lm[0] - lm[3]) + np.linalg.norm(bridge - lm[4])) / 2.0
    return np.linalg.norm(np.asarray(scan_vertices, np.float64) - centre, axis=1) <= radius


def point_to_surface(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, method: str = "auto"):
    """Distances (and closest points, triangles) from ``points`` to a mesh surface."""
    closest, tri, _, dist = ClosestPoints(vertices, triangles, method).query(points)
    return dist, closest, tri


def _rodrigues(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    if th < 1e-15:
        return np.eye(3)
    k = w / th
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * kx + (1 - np.cos(th)) * kx @ kx


def rigid_refine(vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray, *, scale: bool = True,
                 iterations: int = 50, tol: float = 1e-6, method: str = "auto"):
    """Move a mesh (similarity about its centroid) to minimise the distances from ``points`` to it.

    Gauss–Newton on ``Σ (n_k · (c_k + δ(c_k) − p_k))²``, where ``c_k`` is the closest mesh point
    of ``p_k``, ``n_k`` the normal of its triangle and ``δ`` the linearised similarity update.

    Returns:
        (moved vertices (N, 3), (s, R, t) such that moved = s R v + t).
    """
    v = np.asarray(vertices, np.float64).copy()
    p = np.asarray(points, np.float64)
    s_tot, R_tot, t_tot = 1.0, np.eye(3), np.zeros(3)
    prev = np.inf
    for _ in range(int(iterations)):
        cp = ClosestPoints(v, triangles, method)
        closest, tri, _, dist = cp.query(p)
        cost = float(np.mean(dist ** 2))
        n = face_normals(v, triangles)[tri]
        m = closest.mean(axis=0)
        rel = closest - m
        r = np.einsum("ij,ij->i", n, closest - p)
        # columns: rotation ω (3), translation (3), scale (1)
        J = np.concatenate([np.cross(rel, n), n] + ([np.einsum("ij,ij->i", n, rel)[:, None]] if scale else []), 1)
        delta, *_ = np.linalg.lstsq(J, -r, rcond=None)
        Rk = _rodrigues(delta[:3])
        sk = 1.0 + (delta[6] if scale else 0.0)
        tk = m + delta[3:6] - sk * Rk @ m
        v = sk * v @ Rk.T + tk
        s_tot, R_tot, t_tot = sk * s_tot, Rk @ R_tot, sk * Rk @ t_tot + tk
        if abs(prev - cost) <= tol * max(cost, 1e-12) or np.linalg.norm(delta) < 1e-6:
            break
        prev = cost
    return v, (s_tot, R_tot, t_tot)


@dataclasses.dataclass
class NowError:
    """Per-vertex distances (mm) over the cropped scan and their statistics."""

    distances: np.ndarray
    median: float
    mean: float
    std: float
    aligned_vertices: np.ndarray
    crop: np.ndarray

    def summary(self) -> dict:
        return {"median_mm": self.median, "mean_mm": self.mean, "std_mm": self.std,
                "p95_mm": float(np.percentile(self.distances, 95)) if len(self.distances) else float("nan"),
                "n_points": len(self.distances)}


def now_error(pred_vertices, pred_triangles, pred_lm7, scan_vertices, scan_lm7, *, metrical: bool = False,
              refine: bool = True, method: str = "auto") -> NowError:
    """NoW-style error of a predicted mesh against a scan (see module docstring); all inputs in mm.

    Args:
        pred_vertices (N, 3), pred_triangles (M, 3), pred_lm7 (7, 3): the prediction and its 7 landmarks.
        scan_vertices (V, 3), scan_lm7 (7, 3): the scan (mm) and its 7 landmarks.
        metrical: no scale in the alignment (the prediction is already in mm).
    """
    crop = now_crop(scan_vertices, scan_lm7)
    pts = np.asarray(scan_vertices, np.float64)[crop]
    if len(pts) == 0:
        raise ValueError("now_error: no scan vertex inside the crop")
    s, R, t = similarity(pred_lm7, scan_lm7, scale=not metrical)
    v = apply_similarity(pred_vertices, s, R, t)
    if refine:
        v, _ = rigid_refine(v, pred_triangles, pts, scale=not metrical, method=method)
    dist, _, _ = point_to_surface(pts, v, pred_triangles, method)
    return NowError(dist, float(np.median(dist)), float(np.mean(dist)), float(np.std(dist)), v, crop)
