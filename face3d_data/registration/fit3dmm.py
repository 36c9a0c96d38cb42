"""Stage B of a registration: fit a 3DMM's identity and expression (and the similarity) to a scan.

Model: ``S(c) = μ + B c`` (``B`` = identity then expression columns, model units) and a scan-frame
vertex ``v_i = s R S_i(c) + t``. Energy (in mm², scan frame):

    E = mean_i w_i ‖v_i − u_i‖²  +  λ_l · mean_k ‖v_{lm_k} − q_k‖²  +  ρ ‖c / σ‖²

``u_i``: closest scan point of ``v_i`` (rejected on scan borders, normal disagreement or beyond
a cap, as in NICP); ``q_k``: scan landmarks; ``σ``: the model's coefficient stds; only vertices of
``vertex_mask`` (the face) take part. The fit alternates: closest points -> linear solve for ``c``
(similarity fixed) -> weighted Umeyama for (s, R, t) (coefficients fixed), with a shrinking cap.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from face3d_data.registration.landmarks import (
    apply_similarity,
    invert_similarity,
    similarity,
)
from face3d_data.registration.nicp import Target, find_correspondences
from face3d_data.registration.surface import vertex_normals


@dataclasses.dataclass
class ModelFit:
    """Result: coefficients (raw model units), the similarity model -> scan (mm), the fitted vertices."""

    shape_para: np.ndarray
    exp_para: np.ndarray
    s: float
    R: np.ndarray
    t: np.ndarray
    vertices: np.ndarray        # (N, 3) scan frame, mm
    rms_mm: float
    valid_fraction: float


def fit_model(model, triangles, target: Target, landmark_vertices, landmark_points, s, R, t, *,
              vertex_mask=None, iterations: int = 6, caps_mm=(20.0, 10.0, 6.0, 4.0),
              prior: float = 0.05, landmark_weight: float = 0.5, min_cos: float = 0.5,
              use_expression: bool = True) -> ModelFit:
    """Fit identity + expression to ``target`` (scan frame, mm), starting from similarity (s, R, t).

    Args:
        model: :class:`face3d_data.morphable.MorphableModel`.
        triangles: (M, 3) outward-wound template triangles.
        landmark_vertices: (L,) template vertex indices; landmark_points: (L, 3) scan mm.
        vertex_mask: (N,) bool vertices used for the data term (default all).
        prior: ρ, mm² per σ² of coefficient; landmark_weight: λ_l.
    """
    n = model.n_vertices
    mean = model.mean.astype(np.float64)
    block = model.basis_matrix
    ks = model.n_shape
    std = np.concatenate([model.shape_std, model.exp_std]).astype(np.float64)
    if not use_expression:
        block = block[:, :ks]
        std = std[:ks]
    kk = block.shape[1]
    mask = np.ones(n, bool) if vertex_mask is None else np.asarray(vertex_mask, bool)
    lm_v = np.asarray(landmark_vertices, np.int64)
    lm_p = np.asarray(landmark_points, np.float64)
    coef = np.zeros(kk)
    verts_model = mean.copy()
    corr = None
    caps = list(caps_mm) + [caps_mm[-1]] * max(0, iterations - len(caps_mm))
    lm_rows = (3 * lm_v[:, None] + np.arange(3)[None, :]).ravel()
    b_lm = block[lm_rows].astype(np.float64)
    for it in range(iterations):
        cur = apply_similarity(verts_model, s, R, t)
        normals = vertex_normals(cur, triangles)
        corr = find_correspondences(target, cur, normals, caps[it], min_cos)
        w = corr.weight * mask
        sel = np.flatnonzero(w > 0)
        n_w = max(len(sel), 1)
        # coefficient solve in the model frame; residuals scaled to mm by s
        y = invert_similarity(corr.points[sel], s, R, t)
        rows = (3 * sel[:, None] + np.arange(3)[None, :]).ravel()
        b = block[rows].astype(np.float64)
        ww = np.repeat(w[sel], 3)
        r = (y - mean[sel]).ravel()
        s2 = s * s
        lhs = (s2 / n_w) * (b.T * ww) @ b
        rhs = (s2 / n_w) * (b.T * ww) @ r
        if len(lm_v):
            y_lm = invert_similarity(lm_p, s, R, t)
            r_lm = (y_lm - mean[lm_v]).ravel()
            lam = landmark_weight * s2 / len(lm_v)
            lhs += lam * b_lm.T @ b_lm
            rhs += lam * b_lm.T @ r_lm
        lhs[np.diag_indices(kk)] += prior / std ** 2
        coef = np.linalg.solve(lhs, rhs)
        verts_model = mean + (block @ coef.astype(np.float32)).reshape(n, 3).astype(np.float64)
        # similarity update on the data correspondences plus the landmarks
        src = np.concatenate([verts_model[sel], verts_model[lm_v]])
        dst = np.concatenate([corr.points[sel], lm_p])
        wts = np.concatenate([np.full(len(sel), 1.0 / n_w), np.full(len(lm_v), landmark_weight / max(len(lm_v), 1))])
        s, R, t = similarity(src, dst, wts)
    cur = apply_similarity(verts_model, s, R, t)
    corr = find_correspondences(target, cur, vertex_normals(cur, triangles), caps[-1], min_cos)
    w = corr.weight * mask
    rms = float(np.sqrt(np.sum(w * corr.distance ** 2) / max(w.sum(), 1.0)))
    shape_para = coef[:ks]
    exp_para = coef[ks:] if kk > ks else np.zeros(model.n_exp)
    return ModelFit(shape_para, exp_para, float(s), R, t, cur, rms, float(np.mean(w[mask] > 0)))
