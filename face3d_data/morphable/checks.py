"""Sanity checks of a model's bases, for ``build_model`` reports (shapes and finiteness are checked
by the :class:`MorphableModel` constructor itself)."""

from __future__ import annotations

import numpy as np

from face3d_data.morphable.model import MorphableModel


def orthonormality_error(basis: np.ndarray) -> dict:
    """For a (N, 3, K) basis: max |BᵀB - I| off-diagonal and on the diagonal (unit columns).

    Meaningful for raw BFM-style bases (unit eigenvectors); a normalized basis has column norms σ.
    """
    flat = np.asarray(basis, np.float64).reshape(-1, basis.shape[-1])
    if flat.shape[1] == 0:
        return {"max_off_diagonal": 0.0, "max_norm_error": 0.0}
    gram = flat.T @ flat
    off = gram - np.diag(np.diag(gram))
    return {"max_off_diagonal": float(np.abs(off).max()) if len(gram) > 1 else 0.0,
            "max_norm_error": float(np.abs(np.sqrt(np.diag(gram)) - 1).max())}


def model_report(model: MorphableModel) -> dict:
    """Counts, extents and basis orthonormality of ``model`` (a plain dict, JSON-friendly)."""
    raw = model.to_convention("raw")
    lo, hi = model.mean.min(0), model.mean.max(0)
    report = {
        "name": model.name, "convention": model.convention, "n_vertices": model.n_vertices,
        "n_triangles": 0 if model.triangles is None else int(len(model.triangles)),
        "n_shape": model.n_shape, "n_exp": model.n_exp, "n_tex": model.n_tex,
        "extent": [float(v) for v in hi - lo],
        "shape_basis": orthonormality_error(raw.shape_basis),
        "exp_basis": orthonormality_error(raw.exp_basis),
        "has_uv": model.uv is not None, "has_regions": model.regions is not None,
        "has_contour_lines": model.contour_lines is not None,
    }
    if model.triangles is not None:
        used = np.zeros(model.n_vertices, bool)
        used[model.triangles.ravel()] = True
        report["unreferenced_vertices"] = int((~used).sum())
    return report
