"""Semantics of the CPU z-buffer checked against independent expectations (geometry, not code)."""

import numpy as np
import pytest

from face3d_data.render import rasterize, rasterize_batch, render_attributes, render_attributes_batch, render_texture


def _coverage(vertices, triangles, h, w):
    """How many times each pixel is drawn when every triangle is rasterised alone."""
    count = np.zeros((h, w), int)
    for tri in triangles:
        count += rasterize(vertices, tri[None], h, w).mask
    return count


def test_barycentrics_reproduce_pixel_positions():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.uniform(0, 30, (40, 2)), rng.uniform(0, 1, (40, 1))], 1).astype(np.float32)
    t = rng.integers(0, 40, (60, 3))
    r = rasterize(v, t, 32, 32)
    ys, xs = np.nonzero(r.mask)
    pos = np.einsum("pk,pkc->pc", r.barycentric[ys, xs], v[t[r.triangle_id[ys, xs]]][..., :2])
    np.testing.assert_allclose(pos, np.stack([xs, ys], 1), atol=1e-4)
    assert np.all(r.barycentric[ys, xs] >= 0)
    np.testing.assert_allclose(r.barycentric[ys, xs].sum(1), 1, atol=1e-6)


def test_shared_edges_through_pixel_centres_drawn_exactly_once():
    # a fan of triangles around a centre, all vertices on pixel centres, edges along rows,
    # columns, diagonals and slopes; inside pixels must be drawn exactly once
    ring = np.array([[2, 2], [10, 2], [18, 2], [18, 9], [18, 18], [9, 18], [2, 18], [2, 11]], float)
    v = np.concatenate([[[10, 10]], ring], 0)
    v = np.concatenate([v, np.zeros((len(v), 1))], 1).astype(np.float32)
    t = np.array([[0, 1 + i, 1 + (i + 1) % 8] for i in range(8)])
    count = _coverage(v, t, 21, 21)
    assert count.max() == 1
    assert np.all(count[3:18, 3:18] == 1)          # strictly inside the square: no cracks
    # top-left rule on the outer boundary: left and top edges in, right and bottom edges out
    assert np.all(count[2, 2:18] == 1) and np.all(count[2:18, 2] == 1)
    assert np.all(count[18, :] == 0) and np.all(count[:, 18] == 0)
    # same answer in the combined z-buffer, for both windings
    assert np.array_equal(rasterize(v, t, 21, 21).mask, count == 1)
    assert np.array_equal(rasterize(v, t[:, ::-1], 21, 21).mask, count == 1)


def test_larger_z_wins_regardless_of_order_and_ties_keep_first():
    back = np.array([[0, 0, 1], [20, 0, 1], [0, 20, 1]], np.float32)
    front = back.copy()
    front[:, 2] = 2
    v = np.concatenate([back, front])
    for t in ([[0, 1, 2], [3, 4, 5]], [[3, 4, 5], [0, 1, 2]]):
        r = rasterize(v, t, 10, 10)
        assert np.all(r.depth[r.mask] == 2)
        assert np.all(np.array(t)[r.triangle_id[r.mask]][:, 0] == 3)
    flat = np.concatenate([back, back])
    for first in (0, 1):
        t = [[0, 1, 2], [3, 4, 5]] if first == 0 else [[3, 4, 5], [0, 1, 2]]
        r = rasterize(flat, t, 10, 10)
        assert np.all(r.triangle_id[r.mask] == 0)


def test_zero_area_nan_and_empty_draw_nothing():
    v = np.array([[0, 0, 0], [5, 5, 0], [10, 10, 0], [np.nan, 3, 0], [9, 0, 0]], np.float32)
    r = rasterize(v, [[0, 1, 2], [0, 0, 4], [0, 3, 4], [1, 1, 1]], 12, 12)
    assert not r.mask.any() and np.all(r.depth == -np.inf) and np.all(r.barycentric == 0)
    r = rasterize(np.zeros((0, 3)), np.zeros((0, 3), int), 5, 6)
    assert r.triangle_id.shape == (5, 6) and not r.mask.any()
    assert rasterize(v, [[0, 1, 4]], 0, 0).triangle_id.shape == (0, 0)


def test_huge_and_offscreen_triangles_are_exact():
    # a huge triangle covering the image: barycentrics equal the float64 analytic ones
    v = np.array([[-2e9, -1e9, 0], [3e9, -1e9, 100], [-1e9, 4e9, 50]], np.float32)
    r = rasterize(v, [[0, 1, 2]], 16, 16)
    assert r.mask.all()
    p = v.astype(np.float64)
    ys, xs = np.mgrid[:16, :16]
    m = np.array([[p[0, 0], p[1, 0], p[2, 0]], [p[0, 1], p[1, 1], p[2, 1]], [1, 1, 1]])
    b = np.linalg.solve(m, np.stack([xs.ravel(), ys.ravel(), np.ones(256)])).T.reshape(16, 16, 3)
    np.testing.assert_allclose(r.barycentric, b, atol=1e-6)
    # a triangle entirely off-screen draws nothing; one half off-screen draws its visible part
    off = np.array([[-50, -50, 0], [-10, -50, 0], [-50, -10, 0]], np.float32)
    assert not rasterize(off, [[0, 1, 2]], 16, 16).mask.any()
    half = np.array([[-10, 0, 0], [10, 0, 0], [-10, 20, 0]], np.float32)
    ys, xs = np.mgrid[:16, :16]
    expected = xs + ys < 10    # pixels on the hypotenuse x+y=10 lie on a right edge: excluded
    assert np.array_equal(rasterize(half, [[0, 1, 2]], 16, 16).mask, expected)


def test_input_validation():
    v = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"triangles\[1, 2\] = 4"):
        rasterize(v, [[0, 1, 2], [0, 1, 4]], 4, 4)
    with pytest.raises(ValueError, match=r"triangles\[0, 0\] = -1"):
        rasterize(v, [[-1, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="vertices"):
        rasterize(np.zeros((4, 2)), [[0, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="triangles"):
        rasterize(v, [[0.5, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="height"):
        rasterize(v, [[0, 1, 2]], -1, 4)
    with pytest.raises(ValueError, match="attributes"):
        render_attributes(v, [[0, 1, 2]], np.zeros((3, 3)), 4, 4)
    with pytest.raises(ValueError, match=r"meshes\[1\] triangles\[0, 1\] = 9"):
        rasterize_batch([(v, [[0, 1, 2]]), (v, [[0, 9, 2]])], 4, 4)


def test_dtype_and_order_are_converted():
    rng = np.random.default_rng(5)
    v = rng.uniform(0, 20, (30, 3)).astype(np.float32)
    t = rng.integers(0, 30, (40, 3)).astype(np.int32)
    ref = rasterize(v, t, 20, 20)
    got = rasterize(np.asfortranarray(v.astype(np.float64)), np.asfortranarray(t.astype(np.int64)), 20, 20)
    assert np.array_equal(ref.triangle_id, got.triangle_id)
    got = rasterize(v[::-1][::-1], t.astype(np.uint16), 20, 20)
    assert np.array_equal(ref.triangle_id, got.triangle_id)


def test_batch_equals_single():
    rng = np.random.default_rng(6)
    meshes = []
    for n in (20, 35, 0, 50):
        v = rng.uniform(-2, 26, (max(n, 1), 3)).astype(np.float32)
        meshes.append((v, rng.integers(0, len(v), (n, 3)), rng.normal(size=(len(v), 2))))
    rb = rasterize_batch([m[:2] for m in meshes], 24, 24, num_threads=2)
    ab = render_attributes_batch(meshes, 24, 24, background=3.0, num_threads=2)
    for b, (v, t, a) in enumerate(meshes):
        r = rasterize(v, t, 24, 24)
        assert np.array_equal(rb.triangle_id[b], r.triangle_id)
        assert np.array_equal(rb.barycentric[b], r.barycentric)
        np.testing.assert_array_equal(ab[b], render_attributes(v, t, a, 24, 24, background=3.0))
    assert rasterize_batch([], 4, 4).triangle_id.shape == (0, 4, 4)


def test_render_texture_bilinear():
    # a screen-aligned square whose uv equals its pixel position samples the texture at
    # integer texels -> exact copy; at half-texel offsets -> the mean of 2x2 neighbours
    rng = np.random.default_rng(7)
    tex = rng.uniform(0, 255, (12, 12, 3)).astype(np.float32)
    v = np.array([[0, 0, 0], [11, 0, 0], [0, 11, 0], [11, 11, 0]], np.float32)
    t = [[0, 1, 2], [1, 3, 2]]
    out = render_texture(v, t, v[:, :2], tex, 12, 12, background=-1)
    np.testing.assert_allclose(out[:11, :11], tex[:11, :11], atol=1e-3)
    assert np.all(out[11, :] == -1) and np.all(out[:, 11] == -1)
    out = render_texture(v, t, v[:, :2] + 0.5, tex, 12, 12)
    mean4 = (tex[:-1, :-1] + tex[1:, :-1] + tex[:-1, 1:] + tex[1:, 1:]) / 4
    np.testing.assert_allclose(out[:10, :10], mean4[:10, :10], atol=1e-3)
    gray = render_texture(v, t, v[:, :2], tex[..., 0].astype(np.uint8), 12, 12)
    assert gray.shape == (12, 12)
