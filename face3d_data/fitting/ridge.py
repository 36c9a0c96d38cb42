"""Tikhonov-regularised linear solve for the shape and expression coefficients, batched.

For a fixed camera ``(s, R, t)`` and fixed landmark vertices, the coefficients ``c`` (identity and
expression stacked, K = Ks + Ke) minimise, per face,

    Σ_i w_i ‖x_i − t − s·M·(μ_i + B_i·c)‖²  +  cᵀ Λ c,        Λ = λ·diag(1/σ²)

with ``M = R[:2]`` (2×3), ``x_i`` in pixels and σ the model's prior std in the coefficients' own
units (so λ is in px²). With ``A_i = s·M·B_i`` and ``r_i = x_i − t − s·M·μ_i`` (rows weighted by
√w) the minimiser has two equivalent closed forms:

- primal, K × K:     (AᵀA + Λ) c = Aᵀ r
- dual,  2n × 2n:    (A Λ⁻¹ Aᵀ + I) y = r,  c = Λ⁻¹ Aᵀ y

The same solve also estimates unregularised *nuisance* parameters ``p`` entering linearly through
a design ``P`` (the linearised camera correction,
:func:`~face3d_data.fitting.camera.camera_jacobian`): ``r ≈ A c + P p``. The primal solves the
bordered (K+q) system; the dual eliminates ``c`` and solves ``(Pᵀ G⁻¹ P) p = Pᵀ G⁻¹ r`` with
``G = A Λ⁻¹ Aᵀ + I`` (the marginal least squares), then ``y = G⁻¹ (r − P p)``.

Every system is solved with ``np.linalg.solve`` over the whole batch (never an explicit inverse).
The matrices are assembled from the pose-independent products cached by
:class:`~face3d_data.fitting.landmark_basis.LandmarkBasis` for the static landmarks; only the
dynamic (marched) jaw landmarks — and, in the primal, static landmarks whose weight is not 1 —
are gathered per face. The primal is used when K ≤ 2n, the dual otherwise.

Landmark arrays here are in the basis' internal order (static first, then dynamic jaw).
"""

from __future__ import annotations

import numpy as np

from face3d_data.fitting.landmark_basis import LandmarkBasis


def selected_vertices(basis: LandmarkBasis, jaw: np.ndarray | None, n_faces: int) -> np.ndarray:
    """(B, 68) local vertex per landmark (internal order); ``jaw`` (B, D) holds the dynamic ones."""
    sel = np.broadcast_to(basis.landmarks, (n_faces, 68))
    if jaw is None:
        return sel
    sel = sel.copy()
    sel[:, basis.n_static:] = jaw
    return sel


def positions(basis: LandmarkBasis, jaw: np.ndarray | None, coef: np.ndarray) -> np.ndarray:
    """(B, 68, 3) model-space landmark positions ``μ + B·c`` (internal order)."""
    n_faces, s = len(coef), basis.n_static
    out = np.empty((n_faces, 68, 3))
    static = basis.static_basis.reshape(3 * s, -1) @ coef.T                   # (3S, B)
    out[:, :s] = basis.static_mean + static.T.reshape(n_faces, s, 3)
    if s < 68:
        vert = np.broadcast_to(basis.landmarks[s:], (n_faces, 68 - s)) if jaw is None else jaw
        out[:, s:] = basis.mean[vert] + np.einsum("bdak,bk->bda", basis.basis[vert], coef)
    return out


def _transpose_times(basis: LandmarkBasis, jaw: np.ndarray | None, u: np.ndarray) -> np.ndarray:
    """``Σ_i B_iᵀ u_i`` for u (B, 68, 3, r) (internal order) -> (B, K, r)."""
    n_faces, s, r = len(u), basis.n_static, u.shape[-1]
    # One GEMM over the whole batch: (K, 3S) @ (3S, B·r).
    stacked = np.moveaxis(u[:, :s].reshape(n_faces, 3 * s, r), 0, 1).reshape(3 * s, n_faces * r)
    out = np.moveaxis((basis.static_basis.reshape(3 * s, -1).T @ stacked).reshape(-1, n_faces, r), 0, 1)
    if s < 68:
        vert = np.broadcast_to(basis.landmarks[s:], (n_faces, 68 - s)) if jaw is None else jaw
        out += np.einsum("bdak,bdar->bkr", basis.basis[vert], u[:, s:])
    return out


def _apply_camera(proj: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(B, 2, 3) camera times (B, m, 3, K) rows -> (B, m, 2, K), as broadcast multiply-adds."""
    return (proj[:, None, :, 0, None] * rows[:, :, None, 0]
            + proj[:, None, :, 1, None] * rows[:, :, None, 1]
            + proj[:, None, :, 2, None] * rows[:, :, None, 2])


def _primal_normal(basis, jaw, proj, weights) -> np.ndarray:
    """(B, K, K) ``Σ_i w_i B_iᵀ (sM)ᵀ(sM) B_i``."""
    n_faces, s, k = len(proj), basis.n_static, basis.n_coefficients
    q = np.swapaxes(proj, 1, 2) @ proj                                       # (B, 3, 3)
    normal = (q.reshape(n_faces, 9) @ basis.static_gram()).reshape(n_faces, k, k)
    # Direct rows: static landmarks whose weight differs from 1 in some face (coefficient w - 1,
    # correcting the unit-weight static Gram) and the dynamic jaw landmarks (coefficient w).
    deviant = np.nonzero(np.any(weights[:, :s] != 1.0, axis=0))[0]
    dyn = basis.landmarks[s:] if jaw is None else jaw
    verts = np.concatenate([np.broadcast_to(basis.landmarks[deviant], (n_faces, len(deviant))),
                            np.broadcast_to(dyn, (n_faces, 68 - s))], axis=1)
    if verts.shape[1]:
        alpha = np.concatenate([weights[:, deviant] - 1.0, weights[:, s:]], axis=1)
        rows = _apply_camera(proj, basis.basis[verts]).reshape(n_faces, -1, k)   # (B, 2J, K)
        normal += np.swapaxes(rows * np.repeat(alpha, 2, axis=1)[..., None], 1, 2) @ rows
    return normal


def _dual_gram(basis, jaw, proj, lambda_shape, lambda_exp) -> np.ndarray:
    """(B, 2n, 2n) ``(sM) K_ij (sM)ᵀ`` blocks (unweighted), internal landmark order."""
    n_faces, s = len(proj), basis.n_static
    full, static = basis.kernel(lambda_shape, lambda_exp)
    pair = np.einsum("bpa,bqc->bpqac", proj, proj).reshape(n_faces, 4, 9)
    gss = (pair @ static).reshape(n_faces, 2, 2, s, s)
    gram = np.empty((n_faces, 68, 2, 68, 2))
    gram[:, :s, :, :s, :] = gss.transpose(0, 3, 1, 4, 2)
    if s < 68:
        dyn = np.broadcast_to(basis.landmarks[s:], (n_faces, 68 - s)) if jaw is None else jaw
        every = selected_vertices(basis, jaw, n_faces)
        kd = full[dyn[:, :, None], :, every[:, None, :], :]                   # (B, D, 68, 3, 3)
        half = np.einsum("bpa,bdjac->bdjpc", proj, kd)
        gd = np.einsum("bdjpc,bqc->bdpjq", half, proj)                      # (B, D, 2, 68, 2)
        gram[:, s:] = gd
        gram[:, :s, :, s:, :] = gd[:, :, :, :s, :].transpose(0, 3, 4, 1, 2)
    return gram.reshape(n_faces, 136, 136)


def solve_coefficients(basis: LandmarkBasis, jaw: np.ndarray | None, scale: np.ndarray,
                       rotation: np.ndarray, translation: np.ndarray, points: np.ndarray,
                       weights: np.ndarray, lambda_shape: float, lambda_exp: float,
                       nuisance: np.ndarray | None = None, method: str = "auto"):
    """Solve for the stacked coefficients (and nuisance parameters) of a batch.

    Args:
        basis: the model's :class:`LandmarkBasis`.
        jaw: (B, D) int64 local vertex of each dynamic landmark, or None (fixed vertices).
        scale: (B,) camera scale s; rotation: (B, 3, 3); translation: (B, 2).
        points: (B, 68, 2) image points, Matlab frame (y up), internal order; rows with weight 0
            must be finite.
        weights: (B, 68) >= 0, internal order.
        lambda_shape, lambda_exp: λ for the identity and expression parts (px²), > 0.
        nuisance: optional (B, 68, 2, q) design of unregularised extra parameters.
        method: "auto" (primal when K ≤ 136), "primal" or "dual" (same minimiser).
    Returns:
        ``(c, p)``: (B, K) float64 coefficients [shape | expression] in model units, and the
        (B, q) nuisance parameters (q = 0 without ``nuisance``).
    """
    n_faces, k = len(points), basis.n_coefficients
    if method == "auto":
        method = "primal" if k <= 136 else "dual"
    if method not in ("primal", "dual"):
        raise ValueError(f"method: expected 'auto', 'primal' or 'dual', got {method!r}")
    if nuisance is None:
        nuisance = np.zeros((n_faces, 68, 2, 0))
    q = nuisance.shape[-1]
    proj = rotation[:, :2] * scale[:, None, None]                            # (B, 2, 3) = s·M
    mean_sel = basis.mean[selected_vertices(basis, jaw, n_faces)]             # (B, 68, 3)
    residual = points - translation[:, None] - mean_sel @ np.swapaxes(proj, 1, 2)
    targets = np.concatenate([residual[..., None], nuisance], axis=3)        # (B, 68, 2, 1+q): [r | P]
    precision = basis.prior_precision(lambda_shape, lambda_exp)
    if method == "primal":
        wt = targets * weights[:, :, None, None]
        cross = _transpose_times(basis, jaw, np.einsum("bpa,bnpr->bnar", proj, wt))   # Aᵀ W [r | P]
        flat_t = targets.reshape(n_faces, 136, 1 + q)
        small = np.swapaxes(flat_t, 1, 2) @ (wt.reshape(n_faces, 136, 1 + q))          # [r|P]ᵀ W [r|P]
        system = np.zeros((n_faces, k + q, k + q))
        system[:, :k, :k] = _primal_normal(basis, jaw, proj, weights)
        system[:, np.arange(k), np.arange(k)] += precision
        system[:, :k, k:] = cross[..., 1:]
        system[:, k:, :k] = np.swapaxes(cross[..., 1:], 1, 2)
        system[:, k:, k:] = small[:, 1:, 1:]
        rhs = np.concatenate([cross[..., 0], small[:, 1:, 0]], axis=1)
        sol = np.linalg.solve(system, rhs[..., None])[..., 0]
        return sol[:, :k], sol[:, k:]
    sqrt_w = np.repeat(np.sqrt(weights), 2, axis=1)                          # (B, 136)
    gram = _dual_gram(basis, jaw, proj, lambda_shape, lambda_exp)
    gram *= sqrt_w[:, :, None] * sqrt_w[:, None, :]
    gram[:, np.arange(136), np.arange(136)] += 1.0
    wt = targets.reshape(n_faces, 136, 1 + q) * sqrt_w[..., None]            # [r̃ | P̃]
    solved = np.linalg.solve(gram, wt)
    y, g_extra = solved[..., 0], solved[..., 1:]                             # G⁻¹r̃, G⁻¹P̃
    p = np.zeros((n_faces, q))
    if q:
        reduced = np.swapaxes(wt[..., 1:], 1, 2) @ g_extra                   # (B, q, q)
        p = np.linalg.solve(reduced, np.einsum("bmq,bm->bq", wt[..., 1:], y)[..., None])[..., 0]
        y = y - np.einsum("bmq,bq->bm", g_extra, p)                          # G⁻¹(r̃ − P̃ p)
    # c = Λ⁻¹ Ãᵀ y with Ã_i = √w_i · s·M·B_i  ->  Λ⁻¹ Σ_i B_iᵀ (√w_i (s·M)ᵀ y_i)
    u = np.einsum("bpa,bnp->bna", proj, (y * sqrt_w).reshape(n_faces, 68, 2))
    return _transpose_times(basis, jaw, u[..., None])[..., 0] / precision, p
