"""The Cython z-buffer against a straightforward numpy reference of the same semantics.

The reference expands every triangle into the pixel centres of its clipped bounding box with
whole-array numpy operations, tests them with the same float64 edge functions (cross(a - p, b - p)
on positively wound triangles, top-left rule on ties) and resolves the z-buffer by
sorting: per pixel the largest float32 depth wins, ties going to the earliest triangle.
Triangle ids must be identical and values agree to 1e-5. The reference lives in
:mod:`face3d_data.render.reference` (``benchmarks/render.py`` times it too).
"""

import numpy as np
import pytest

from face3d_data.render import interpolate, rasterize, render_attributes
from face3d_data.render.reference import reference_rasterize


def _random_mesh(rng, n_vertices, n_triangles, lo, hi):
    v = rng.uniform(lo, hi, (n_vertices, 3)).astype(np.float32)
    v[:, 2] = rng.uniform(-50, 50, n_vertices)
    return v, rng.integers(0, n_vertices, (n_triangles, 3)).astype(np.int32)


def _grid_mesh(nx, ny, step, origin, rng):
    """A grid whose vertices (and so shared edges) lie on pixel centres, random diagonals."""
    xs, ys = np.meshgrid(np.arange(nx + 1) * step + origin[0], np.arange(ny + 1) * step + origin[1])
    v = np.stack([xs.ravel(), ys.ravel(), rng.uniform(0, 1, xs.size)], -1).astype(np.float32)
    tris = []
    for j in range(ny):
        for i in range(nx):
            a, b = j * (nx + 1) + i, j * (nx + 1) + i + 1
            c, d = a + nx + 1, b + nx + 1
            tris += [[a, b, d], [a, d, c]] if rng.random() < 0.5 else [[a, b, c], [b, d, c]]
    return v, np.array(tris, np.int32)


def _corpus():
    rng = np.random.default_rng(1234)
    cases = {}
    cases["random_small"] = _random_mesh(rng, 60, 80, -5, 45)
    cases["random_tiny_triangles"] = (lambda v, t: (v, t))(*_random_mesh(rng, 400, 300, 0, 40))
    centres = rng.uniform(0, 40, (200, 1, 3))
    v = (centres + rng.normal(0, 1.5, (200, 3, 3))).reshape(-1, 3).astype(np.float32)
    cases["sliver_and_small"] = (v, np.arange(600, dtype=np.int32).reshape(-1, 3))
    qv, qt = _random_mesh(rng, 300, 1500, -3, 43)
    qv = (np.round(qv * 2) / 2).astype(np.float32)         # half-pixel lattice: many exact edge hits
    qv[:, 2] = np.round(qv[:, 2] / 25)                     # few depth levels: many z ties
    cases["random_lattice_ties"] = (qv, qt)
    cases["grid_integer_edges"] = _grid_mesh(8, 6, 5, (2, 3), rng)
    gv, gt = _grid_mesh(10, 10, 3, (-7, -4), rng)
    gv[:, 2] = 0.0                                   # flat: ties resolved by list order
    cases["grid_flat_offscreen"] = (gv, gt)
    cases["degenerate"] = (np.array([[1, 1, 0], [10, 10, 0], [20, 20, 0], [5, 5, 1], [5, 5, 1],
                                     [30, 2, 1], [3, 30, 2]], np.float32),
                           np.array([[0, 1, 2], [3, 4, 5], [0, 0, 6], [0, 5, 6]], np.int32))
    nan_v = np.array([[0, 0, 0], [30, 0, 0], [0, 30, 0], [np.nan, 5, 0], [40, 40, np.inf]], np.float32)
    cases["nan_inf"] = (nan_v, np.array([[0, 3, 2], [0, 1, 4], [2, 1, 0]], np.int32))
    cases["offscreen"] = (np.array([[-100, -100, 0], [-50, -100, 0], [-100, -50, 0], [100, 100, 0],
                                    [200, 100, 0], [-30, 20, 3], [70, 10, 3], [20, 90, 3]], np.float32),
                          np.array([[0, 1, 2], [3, 4, 2], [5, 6, 7]], np.int32))
    cases["huge"] = (np.array([[-1e9, -1e9, 0], [3e9, -1e9, 1], [-1e9, 3e9, 2], [1e7, 20, 5],
                               [20, 1e7, 5], [-1e7, -1e7, 5]], np.float32),
                     np.array([[0, 1, 2], [3, 4, 5]], np.int32))
    cases["single_pixels"] = (np.array([[5, 5, 0], [5.4, 5, 0], [5, 5.4, 0], [7.9, 7.9, 1],
                                        [8.1, 7.9, 1], [8, 8.1, 1], [0, 0, 2], [0.2, 0, 2], [0, 0.2, 2]],
                                       np.float32),
                              np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], np.int32))
    return cases


CORPUS = _corpus()


@pytest.mark.parametrize("name", sorted(CORPUS))
@pytest.mark.parametrize("size", [(37, 41), (1, 1)])
def test_matches_reference(name, size):
    vertices, triangles = CORPUS[name]
    h, w = size
    ids, bary, depth = reference_rasterize(vertices, triangles, h, w)
    got = rasterize(vertices, triangles, h, w)
    np.testing.assert_array_equal(got.triangle_id, ids)
    np.testing.assert_allclose(got.barycentric, bary, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got.depth, depth, atol=1e-5, rtol=1e-6)


@pytest.mark.parametrize("name", ["random_small", "grid_integer_edges", "huge"])
def test_attributes_match_reference(name):
    vertices, triangles = CORPUS[name]
    attributes = np.random.default_rng(0).normal(0, 10, (len(vertices), 4)).astype(np.float32)
    ids, bary, _ = reference_rasterize(vertices, triangles, 37, 41)
    expected = np.einsum("hwk,hwkc->hwc", bary.astype(np.float64),
                         attributes[triangles[np.maximum(ids, 0)]].astype(np.float64))
    expected[ids < 0] = -7.0
    got = render_attributes(vertices, triangles, attributes, 37, 41, background=-7.0)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-5)
    raster = rasterize(vertices, triangles, 37, 41)
    np.testing.assert_array_equal(interpolate(attributes, raster, triangles)[ids >= 0], got[ids >= 0])


def test_corpus_is_not_trivial():
    # guard: the corpus must actually exercise draws, ties and background
    ids, _, _ = reference_rasterize(*CORPUS["grid_flat_offscreen"], 37, 41)
    assert (ids >= 0).sum() > 200 and (ids < 0).sum() > 50
    ids, _, _ = reference_rasterize(*CORPUS["huge"], 37, 41)
    assert (ids == 0).sum() + (ids == 1).sum() == 37 * 41
