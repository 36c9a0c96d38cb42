"""Tikhonov-regularised linear solve for the shape and expression coefficients, batched.

For a fixed camera ``(s, R, t)`` and fixed landmark vertices, the coefficients ``c`` (identity and
expression stacked, K = Ks + Ke) minimise, per face,

    Σ_i w_i ‖x_i − t − s·M·(μ_i + B_i·c)‖²  +  cᵀ Λ c,        Λ = λ·diag(1/σ²)

with ``M = R[:2]`` (2×3), ``x_i`` in pixels and σ the model's prior std in the coefficients' own
units (so λ is in px²). With ``A_i = s·M·B_i`` and ``r_i = x_i − t − s·M·μ_i`` (rows weighted by
√w) the minimiser has two equivalent closed forms:

- primal, K × K:     (AᵀA + Λ) c = Aᵀ r
- dual,  2n × 2n:    (A Λ⁻¹ Aᵀ + I) y = r,  c = Λ⁻¹ Aᵀ y

Optionally the same solve also estimates unregularised *nuisance* parameters ``p`` entering
linearly through a design ``P`` (the linearised camera correction,
:func:`~face3d_data.fitting.camera.camera_jacobian`): ``r ≈ A c + P p``. The primal then solves the
bordered (K+q) system; the dual eliminates ``c`` and solves ``(Pᵀ G⁻¹ P) p = Pᵀ G⁻¹ r`` with
``G = A Λ⁻¹ Aᵀ + I`` (the marginal least squares), then ``y = G⁻¹ (r − P p)``.

Both are solved with ``np.linalg.solve`` on the whole batch (never an explicit inverse). The primal
is used when K ≤ 2n; otherwise the dual, whose matrix comes from the precomputed kernel
``B Λ⁻¹ Bᵀ`` (:meth:`LandmarkBasis.kernel`) so its cost does not grow with K.
"""

from __future__ import annotations

import numpy as np

from face3d_data.fitting.landmark_basis import LandmarkBasis


def solve_coefficients(basis: LandmarkBasis, selected: np.ndarray, scale: np.ndarray,
                       rotation: np.ndarray, translation: np.ndarray, points: np.ndarray,
                       weights: np.ndarray, lambda_shape: float, lambda_exp: float,
                       nuisance: np.ndarray | None = None, method: str = "auto"):
    """Solve for the stacked coefficients of a batch.

    Args:
        basis: the model's :class:`LandmarkBasis`.
        selected: (B, n) int64 local vertex index of each landmark.
        scale: (B,) camera scale s; rotation: (B, 3, 3); translation: (B, 2).
        points: (B, n, 2) image points, Matlab frame (y up); rows with weight 0 must be finite.
        weights: (B, n) >= 0.
        lambda_shape, lambda_exp: λ for the identity and expression parts (px²), > 0.
        nuisance: optional (B, n, 2, q) design of unregularised extra parameters.
        method: "auto" (primal when K ≤ 2n), "primal" or "dual".
    Returns:
        ``(c, p)``: (B, K) float64 coefficients [shape | expression] in model units, and the
        (B, q) nuisance parameters (q = 0 without ``nuisance``).
    """
    n_faces, n = selected.shape
    k = basis.n_coefficients
    if method == "auto":
        method = "primal" if k <= 2 * n else "dual"
    proj = rotation[:, :2] * scale[:, None, None]                            # (B, 2, 3) = s·M
    sqrt_w = np.sqrt(weights)
    mean_sel = basis.mean[selected]                                          # (B, n, 3)
    residual = points - translation[:, None] - np.einsum("bpa,bna->bnp", proj, mean_sel)
    residual = (residual * sqrt_w[..., None]).reshape(n_faces, 2 * n)        # r, weighted
    basis_sel = basis.basis[selected]                                        # (B, n, 3, K)
    precision = basis.prior_precision(lambda_shape, lambda_exp)
    if nuisance is None:
        nuisance = np.zeros((n_faces, n, 2, 0))
    q = nuisance.shape[-1]
    extra = (nuisance * sqrt_w[..., None, None]).reshape(n_faces, 2 * n, q)  # P, weighted
    if method == "primal":
        design = proj[:, None] @ basis_sel                                   # (B, n, 2, K)
        design = (design * sqrt_w[..., None, None]).reshape(n_faces, 2 * n, k)
        design = np.concatenate([design, extra], axis=2)                     # [A | P]
        normal = np.swapaxes(design, 1, 2) @ design
        normal[:, np.arange(k), np.arange(k)] += precision
        rhs = np.einsum("bmk,bm->bk", design, residual)
        sol = np.linalg.solve(normal, rhs[..., None])[..., 0]
        return sol[:, :k], sol[:, k:]
    if method != "dual":
        raise ValueError(f"method: expected 'auto', 'primal' or 'dual', got {method!r}")
    rows = (3 * selected[..., None] + np.arange(3)).reshape(n_faces, 3 * n)  # (B, 3n)
    kern = basis.kernel(lambda_shape, lambda_exp)
    ksel = kern[rows[:, :, None], rows[:, None, :]]                          # (B, 3n, 3n)
    # (s·M) K_ij (s·M)ᵀ for every landmark pair, as two broadcast matmuls.
    left = proj[:, None] @ ksel.reshape(n_faces, n, 3, 3 * n)                # (B, n, 2, 3n)
    left = left.reshape(n_faces, 2 * n, n, 3)
    gram = (left @ np.swapaxes(proj, 1, 2)[:, None]).reshape(n_faces, 2 * n, 2 * n)
    w2 = np.repeat(sqrt_w, 2, axis=1)                                        # (B, 2n)
    gram *= w2[:, :, None] * w2[:, None, :]
    gram[:, np.arange(2 * n), np.arange(2 * n)] += 1.0
    solved = np.linalg.solve(gram, np.concatenate([residual[..., None], extra], axis=2))
    y, g_extra = solved[..., 0], solved[..., 1:]                             # G⁻¹r, G⁻¹P
    reduced = np.swapaxes(extra, 1, 2) @ g_extra                             # (B, q, q)
    p = np.linalg.solve(reduced, np.einsum("bmq,bm->bq", extra, y)[..., None])[..., 0]
    y = y - np.einsum("bmq,bq->bm", g_extra, p)                              # G⁻¹(r − P p)
    # c = Λ⁻¹ Aᵀ y with A_i = √w_i · s·M·B_i  ->  Λ⁻¹ Σ_i B_iᵀ (√w_i (s·M)ᵀ y_i)
    u = np.einsum("bpa,bnp->bna", proj, (y * w2).reshape(n_faces, n, 2))     # (B, n, 3)
    return np.einsum("bnak,bna->bk", basis_sel, u) / precision, p
