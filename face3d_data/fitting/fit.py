"""``fit_landmarks``: 3DMM pose, identity and expression from 68 2D landmarks, batched.

Algorithm (per face, all faces of a batch solved together with stacked linear algebra):

1. Start from the mean shape at the model's landmark vertices.
2. Repeat ``iterations`` times:
   a. camera: weighted Gold Standard affine estimate projected onto a scaled rotation by SVD
      (:mod:`face3d_data.fitting.camera`);
   b. contour: landmark marching re-assigns the away-side jaw landmarks to the silhouette
      vertex of their candidate line (:mod:`face3d_data.fitting.contour`);
   c. coefficients: one Tikhonov-regularised linear solve for identity and expression together
      (:mod:`face3d_data.fitting.ridge`).
3. A last camera estimate for the final shape.

The fit runs in the 300W-LP Matlab frame (1-based, y up), so the camera is directly the 300W-LP
``Pose_Para``; inputs and reprojected landmarks are in the canonical frame (0-based, y down).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d_data.coords import canonical_to_matlab, matlab_to_canonical
from face3d_data.fitting.camera import apply_camera_update, camera_jacobian, estimate_scaled_orthographic
from face3d_data.fitting.checks import check_image_hw, check_landmarks, check_weights, usable_weights
from face3d_data.fitting.contour import march
from face3d_data.fitting.landmark_basis import LandmarkBasis, landmark_basis
from face3d_data.fitting.ridge import positions, selected_vertices, solve_coefficients
from face3d_data.w300lp.pose import matrix_to_angles

#: Default regularisation (px²): λ plays the role of the landmark noise variance (~1 px)
#: (MAP with λ = σ_px²); see docs/fitting.md.
DEFAULT_LAMBDA_SHAPE = 1.0
DEFAULT_LAMBDA_EXP = 1.0
DEFAULT_ITERATIONS = 5

#: Faces are processed in chunks of this many to bound memory (results do not depend on it).
CHUNK = 256


@dataclass
class FitResult:
    """Result of :func:`fit_landmarks`. Arrays carry a leading batch axis B only for a batched call.

    Attributes:
        pose_para: (7,) / (B, 7) float64 300W-LP ``Pose_Para`` [pitch, yaw, roll (rad), tx, ty,
            tz, f]: ``x_matlab = f·R·S + t`` (1-based, y up); tz is 0 (orthographic camera).
        shape_para: (Ks,) / (B, Ks) float64 identity coefficients, model units.
        exp_para: (Ke,) / (B, Ke) float64 expression coefficients, model units.
        landmarks: (68, 2) / (B, 68, 2) float64 fitted landmarks reprojected into the canonical
            frame (with the contour vertices chosen by marching).
        vertex_indices: (68,) / (B, 68) int64 model vertex used for each landmark.
        error_px: float / (B,) mean distance (px) between usable input and reprojected landmarks.
        error_normalized: float / (B,) ``error_px`` divided by √(w·h) of the input landmarks' box.
        contour: "marching" or "fixed" (what was actually used; a model without contour lines or
            mesh is fitted with fixed vertices).
    """

    pose_para: np.ndarray
    shape_para: np.ndarray
    exp_para: np.ndarray
    landmarks: np.ndarray
    vertex_indices: np.ndarray
    error_px: np.ndarray | float
    error_normalized: np.ndarray | float
    contour: str


def _check_positive(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a positive number, got {value!r}") from None
    if not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name}: expected a positive number, got {value!r}")
    return v


def _march_jaw(basis: LandmarkBasis, coef: np.ndarray, rotation: np.ndarray) -> np.ndarray | None:
    """(B, 17) local vertex of each jaw landmark after marching, or None without contour lines."""
    if basis.candidates is None:
        return None
    n_faces, cand = len(coef), basis.candidates                              # (17, L)
    # Rotated x of every candidate with the current shape: R0·(μ + B·c).
    flat = basis.basis[cand].reshape(-1, basis.n_coefficients) @ coef.T      # (17·L·3, B)
    shapes = basis.mean[cand][..., None] + flat.reshape(cand.shape + (3, n_faces))
    cand_x = np.einsum("ba,clab->bcl", rotation[:, 0], shapes)               # (B, 17, L)
    pick = march(cand_x, rotation, basis.side)                               # (B, 17)
    fixed = basis.landmarks[basis.n_static:]                                 # jaw, iBUG order 0..16
    return np.where(pick >= 0, cand[np.arange(17), np.maximum(pick, 0)], fixed)


def _fit_chunk(basis, points_m, weights, iterations, lambda_shape, lambda_exp, method):
    """Fit a chunk in internal landmark order: points_m (B, 68, 2) Matlab frame with NaN→0,
    weights (B, 68) (0 = unused). Returns coefficients, camera, jaw vertices and projections."""
    n_faces = len(points_m)
    coef = np.zeros((n_faces, basis.n_coefficients))
    jaw = None
    x3d = positions(basis, jaw, coef)
    for _ in range(iterations):
        scale, rotation, trans = estimate_scaled_orthographic(points_m, x3d, weights)
        jaw = _march_jaw(basis, coef, rotation)
        jac = camera_jacobian(scale, rotation, positions(basis, jaw, coef))
        coef, update = solve_coefficients(basis, jaw, scale, rotation, trans, points_m, weights,
                                          lambda_shape, lambda_exp, nuisance=jac, method=method)
        scale, rotation, trans = apply_camera_update(scale, rotation, trans, update)
        x3d = positions(basis, jaw, coef)
    projected = scale[:, None, None] * np.einsum("bpa,bna->bnp", rotation[:, :2], x3d) + trans[:, None]
    selected = selected_vertices(basis, jaw, n_faces)
    return coef, scale, rotation, trans, selected, projected


def fit_landmarks(landmarks, model, image_hw, *, iterations: int = DEFAULT_ITERATIONS,
                  lambda_shape: float = DEFAULT_LAMBDA_SHAPE, lambda_exp: float = DEFAULT_LAMBDA_EXP,
                  contour: str = "marching", weights=None, method: str = "auto") -> FitResult:
    """Fit a morphable model's pose, identity and expression to 68 2D landmarks.

    Args:
        landmarks: (68, 2) or (B, 68, 2) iBUG-order points in the canonical frame (0-based, x
            right, y down, pixel centres at integers). A point with a NaN coordinate is missing
            and ignored.
        model: a :class:`~face3d_data.morphable.MorphableModel` (any size, including one with
            only the 68 landmark vertices).
        image_hw: (height, width) of the image the landmarks are in (shared by the batch); the
            height fixes the y-up Matlab frame of ``Pose_Para``.
        iterations: camera / contour / coefficient rounds (>= 1).
        lambda_shape, lambda_exp: Tikhonov weights λ (px²) of the priors λ·‖c/σ‖² on identity
            and expression, σ = the model's stds in the coefficients' units.
        contour: "marching" (jaw landmarks on the away side follow the silhouette) or "fixed".
        weights: optional (68,) or (B, 68) non-negative per-landmark weights (0 = ignore).
        method: linear solve, "auto" | "primal" | "dual" (identical results; speed only).
    Returns:
        :class:`FitResult`; each face's result equals fitting that face alone.
    Raises:
        ValueError naming the argument (and face index): wrong shapes, infinite values, fewer than
        6 usable points, coincident or collinear points, a non-positive image size or λ.
    """
    points, batched = check_landmarks(landmarks)
    height, width = check_image_hw(image_hw)
    w = usable_weights(points, check_weights(weights, len(points)))
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"iterations: expected an integer >= 1, got {iterations!r}")
    lambda_shape = _check_positive(lambda_shape, "lambda_shape")
    lambda_exp = _check_positive(lambda_exp, "lambda_exp")
    basis = landmark_basis(model, contour)

    points_m = np.nan_to_num(canonical_to_matlab(points, height), nan=0.0)
    n_faces = len(points)
    order = basis.order
    parts = [_fit_chunk(basis, points_m[i:i + CHUNK, order], w[i:i + CHUNK, order], iterations,
                        lambda_shape, lambda_exp, method) for i in range(0, n_faces, CHUNK)]
    coef, scale, rotation, trans, selected, projected = (np.concatenate(p) for p in zip(*parts))
    back = np.argsort(order)                                                 # internal -> iBUG order
    selected, projected = selected[:, back], projected[:, back]

    pitch, yaw, roll = matrix_to_angles(rotation, "300wlp")
    pose = np.stack([pitch, yaw, roll, trans[:, 0], trans[:, 1], np.zeros(n_faces), scale], axis=1)
    reprojected = matlab_to_canonical(projected, height)
    used = w > 0
    dist = np.linalg.norm(np.where(used[..., None], reprojected - np.nan_to_num(points), 0.0), axis=2)
    error_px = dist.sum(axis=1) / used.sum(axis=1)
    valid = np.where(used[..., None], points, np.nan)
    extent = np.nanmax(valid, axis=1) - np.nanmin(valid, axis=1)
    error_norm = error_px / np.sqrt(extent[:, 0] * extent[:, 1])
    ks = basis.n_shape
    out = dict(pose_para=pose, shape_para=coef[:, :ks], exp_para=coef[:, ks:], landmarks=reprojected,
               vertex_indices=basis.vertices[selected], error_px=error_px, error_normalized=error_norm)
    if not batched:
        out = {k: (float(v[0]) if k.startswith("error") else v[0]) for k, v in out.items()}
    return FitResult(contour="fixed" if basis.candidates is None else "marching", **out)
