"""Sparse solves on a fixed pattern: refactorised solves equal fresh ones and a dense reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from face3d_data.registration.nicp import NICPSystem
from face3d_data.registration.solvers import (
    FixedPattern,
    PatternSolver,
    available_backends,
)
from face3d_data.registration.surface import (
    ClosestPoints,
    closest_on_triangles,
    subdivide,
    unique_edges,
)


def _grid(n=7):
    xs, ys = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    v = np.stack([xs.ravel(), ys.ravel(), 0.1 * np.sin(3 * xs.ravel()) * ys.ravel()], 1)
    a = (np.arange(n - 1)[None, :] + n * np.arange(n - 1)[:, None]).ravel()
    tri = np.concatenate([np.stack([a, a + 1, a + n], 1), np.stack([a + 1, a + n + 1, a + n], 1)])
    return v, tri.astype(np.int32)


def _dense_normal_matrix(v, tri, alpha, w, beta, lm, ridge, stiff=None):
    """AᵀA built from A itself (independent of NICPSystem's slot bookkeeping)."""
    n = len(v)
    edges = unique_edges(tri)
    s = np.ones(n) if stiff is None else stiff
    rows = []
    for (i, j) in edges:
        ae = alpha * 0.5 * (s[i] + s[j])
        for k in range(4):
            r = np.zeros(4 * n)
            r[4 * i + k], r[4 * j + k] = -ae, ae
            rows.append(r)
    vh = np.concatenate([v, np.ones((n, 1))], 1)
    for i in range(n):
        r = np.zeros(4 * n)
        r[4 * i:4 * i + 4] = np.sqrt(w[i]) * vh[i]
        rows.append(r)
    for i in lm:
        r = np.zeros(4 * n)
        r[4 * i:4 * i + 4] = beta * vh[i]
        rows.append(r)
    A = np.array(rows)
    return A.T @ A + ridge * np.eye(4 * n)


@pytest.mark.parametrize("backend", available_backends())
def test_refactorised_solve_equals_fresh_solve_and_dense_reference(backend):
    v, tri = _grid()
    n = len(v)
    rng = np.random.default_rng(0)
    lm = np.array([3, 20, 40])
    sys_ = NICPSystem(v, tri, landmark_vertices=lm, backend=backend)
    targets = v + rng.normal(scale=0.02, size=v.shape)
    lm_t = v[lm] + 0.01
    x_prev = sys_.identity()
    w1 = np.ones(n)
    sys_.solve(20.0, w1, targets, 1.0, lm_t, 1e-6, x_prev)
    # second solve: many weights exactly zero (the values that scipy's sparse sums would drop)
    w2 = (rng.random(n) > 0.5).astype(float)
    x_re = sys_.solve(2.0, w2, targets, 0.5, lm_t, 1e-6, x_prev)
    assert sys_.solver.factorizations == 2
    fresh = NICPSystem(v, tri, landmark_vertices=lm, backend=backend)
    x_fresh = fresh.solve(2.0, w2, targets, 0.5, lm_t, 1e-6, x_prev)
    np.testing.assert_allclose(x_re, x_fresh, atol=1e-9, rtol=1e-7)
    dense = _dense_normal_matrix(v, tri, 2.0, w2, 0.5, lm, 1e-6)
    rhs = sys_.rhs(w2, targets, 0.5, lm_t, 1e-6, x_prev)
    np.testing.assert_allclose(x_re.reshape(4 * n, 3), np.linalg.solve(dense, rhs), atol=1e-7, rtol=1e-6)


def test_assembled_values_match_the_dense_matrix_with_per_vertex_stiffness():
    v, tri = _grid(5)
    n = len(v)
    stiff = np.linspace(1, 3, n)
    w = np.r_[np.zeros(n // 2), np.ones(n - n // 2)]
    sys_ = NICPSystem(v, tri, stiffness=stiff, landmark_vertices=np.array([1]), backend="splu")
    full = sys_.pattern.full_matrix(sys_.values(3.0, w, 0.7, 1e-4)).toarray()
    np.testing.assert_allclose(full, _dense_normal_matrix(v, tri, 3.0, w, 0.7, [1], 1e-4, stiff), atol=1e-12)


def test_fixed_pattern_keeps_explicit_zeros():
    pat = FixedPattern(4, np.array([0, 1, 2, 3, 0]), np.array([0, 1, 2, 3, 3]))
    data = np.array([1.0, 0.0, 2.0, 3.0, 0.0])
    up = pat.upper_matrix(data)
    assert up.nnz == pat.nnz == 5               # zeros kept in the pattern
    # what the pitfall is about: a scipy sum drops them
    summed = up + sp.csc_matrix((4, 4))
    assert summed.nnz < pat.nnz
    with pytest.raises(ValueError):
        pat.slots(np.array([1]), np.array([2]))


def test_pattern_solver_needs_factor_first():
    pat = FixedPattern(2, np.array([0, 1]), np.array([0, 1]))
    with pytest.raises(RuntimeError):
        PatternSolver(pat, "splu").solve(np.ones(2))
    with pytest.raises(ValueError):
        PatternSolver(pat, "no-such-solver")


@pytest.mark.parametrize("method", ["kdtree", "igl"])
def test_closest_points_are_exact_point_to_triangle(method):
    if method == "igl":
        pytest.importorskip("igl")
    v, tri = _grid(9)
    v, tri = subdivide(v, tri)
    rng = np.random.default_rng(3)
    q = rng.uniform(-0.1, 1.1, size=(200, 3))
    cl, t, bary, d = ClosestPoints(v, tri, method).query(q)
    # brute force over every triangle
    abc = v[tri]
    _, _, sq = closest_on_triangles(q[:, None, :], abc[None, :, 0], abc[None, :, 1], abc[None, :, 2])
    np.testing.assert_allclose(d, np.sqrt(sq.min(axis=1)), atol=1e-9)
    np.testing.assert_allclose(np.einsum("qk,qkd->qd", bary, v[tri[t]]), cl, atol=1e-9)
