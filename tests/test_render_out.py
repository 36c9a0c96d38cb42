"""Reusable output buffers (``out=``) and the kernels' own index checks.

A call with ``out=`` must give exactly what a fresh call gives, whatever the buffers held before
(every pixel is overwritten), reject a buffer of the wrong shape, dtype or layout with a
ValueError naming it, and return the caller's arrays themselves. int32 C-contiguous triangles
reach the kernels without a separate pass; their index range is checked while drawing, with the
same error as the up-front check of other dtypes.
"""

import numpy as np
import pytest

from face3d_data.render import (
    Raster,
    interpolate,
    rasterize,
    rasterize_batch,
    render_attributes,
    render_attributes_batch,
)
from face3d_data.render._checks import as_kernel_triangles, as_vertices

H, W = 40, 48


def _mesh(seed, n_vertices, n_triangles, lo, hi):
    rng = np.random.default_rng(seed)
    v = rng.uniform(lo, hi, (n_vertices, 3)).astype(np.float32)
    t = rng.integers(0, n_vertices, (n_triangles, 3)).astype(np.int32)
    return v, t, rng.normal(0, 5, (n_vertices, 4)).astype(np.float32)


BIG = _mesh(0, 300, 600, -10, 60)      # covers most of the image
SMALL = _mesh(1, 12, 6, 15, 30)        # covers a small patch: the rest must become background


def _same_raster(a: Raster, b: Raster):
    np.testing.assert_array_equal(a.triangle_id, b.triangle_id)
    np.testing.assert_array_equal(a.barycentric, b.barycentric)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_rasterize_out_equals_fresh_and_overwrites_every_pixel():
    big, small = rasterize(*BIG[:2], H, W), rasterize(*SMALL[:2], H, W)
    assert big.mask.mean() > 0.5 and 0 < small.mask.mean() < 0.2        # the fixture does what it says
    out = rasterize(*BIG[:2], H, W)
    got = rasterize(*SMALL[:2], H, W, out=out)
    assert got is out
    _same_raster(got, small)
    # junk everywhere (NaN depth, ids beyond the mesh, negative weights): still all overwritten
    out.triangle_id[:] = 12345
    out.barycentric[:] = -3.0
    out.depth[:] = np.nan
    _same_raster(rasterize(*SMALL[:2], H, W, out=out), small)
    _same_raster(rasterize(*BIG[:2], H, W, out=out), big)


def test_render_attributes_out_equals_fresh_and_overwrites_every_pixel():
    fresh = render_attributes(*SMALL, H, W, background=-2.0)
    out = render_attributes(*BIG, H, W, background=7.0)
    got = render_attributes(*SMALL, H, W, background=-2.0, out=out)
    assert got is out
    np.testing.assert_array_equal(got, fresh)
    assert np.sum(fresh == -2.0) > 0.8 * fresh.size          # mostly background in the small mesh
    # 1-D attributes: (H, W) out
    flat_out = np.full((H, W), np.nan, np.float32)
    got = render_attributes(SMALL[0], SMALL[1], SMALL[2][:, 1], H, W, out=flat_out)
    assert got is flat_out
    np.testing.assert_array_equal(got, render_attributes(SMALL[0], SMALL[1], SMALL[2][:, 1], H, W))


def test_interpolate_out_equals_fresh():
    raster = rasterize(*SMALL[:2], H, W)
    fresh = interpolate(SMALL[2], raster, SMALL[1])
    out = np.full((H, W, 4), np.inf, np.float32)
    got = interpolate(SMALL[2], raster, SMALL[1], out=out)
    assert got is out
    np.testing.assert_array_equal(got, fresh)
    np.testing.assert_array_equal(got[~raster.mask], 0)


@pytest.mark.parametrize("field,bad", [
    ("triangle_id", np.zeros((H, W), np.int64)),                     # dtype
    ("barycentric", np.zeros((H, W, 2), np.float32)),                # shape
    ("depth", np.zeros((H, W + 1), np.float32)),                     # shape
    ("depth", np.zeros((W, H), np.float32).T),                       # layout (F order)
    ("depth", np.zeros((H, W), np.float64)),                         # dtype
])
def test_rasterize_rejects_a_wrong_out(field, bad):
    out = rasterize(*SMALL[:2], H, W)._replace(**{field: bad})
    with pytest.raises(ValueError, match=f"out.{field}"):
        rasterize(*SMALL[:2], H, W, out=out)
    with pytest.raises(ValueError, match="out: expected a Raster"):
        rasterize(*SMALL[:2], H, W, out=tuple(out))


def test_image_out_rejects_wrong_shape_dtype_layout_and_read_only():
    v, t, a = SMALL
    for bad in (np.zeros((H, W, 3), np.float32), np.zeros((H, W, 4), np.float64),
                np.zeros((H + 1, W, 4), np.float32), np.zeros((W, H, 4), np.float32).transpose(1, 0, 2),
                [[0.0]]):
        with pytest.raises(ValueError, match="out"):
            render_attributes(v, t, a, H, W, out=bad)
    read_only = np.zeros((H, W, 4), np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        render_attributes(v, t, a, H, W, out=read_only)
    with pytest.raises(ValueError, match="out"):
        render_attributes(v, t, a[:, 0], H, W, out=np.zeros((H, W, 1), np.float32))   # 1-D -> (H, W)
    with pytest.raises(ValueError, match="out"):
        interpolate(a, rasterize(v, t, H, W), t, out=np.zeros((H, W, 4), np.float16))


def test_kernels_check_int32_triangles_with_the_up_front_message():
    v, t, a = BIG
    bad = t.copy()
    bad[417, 2] = len(v)                               # one bad index deep in the mesh
    for tri in (bad, bad.astype(np.int64)):            # kernel check / up-front check: same error
        with pytest.raises(ValueError, match=r"^triangles\[417, 2\] = 300 is out of range for 300 vertices$"):
            rasterize(v, tri, H, W)
        with pytest.raises(ValueError, match=r"triangles\[417, 2\] = 300"):
            render_attributes(v, tri, a, H, W)
    bad[3, 0] = -1
    with pytest.raises(ValueError, match=r"triangles\[3, 0\] = -1"):
        rasterize(v, bad, H, W)
    with pytest.raises(ValueError, match=r"triangles\[3, 0\] = -1"):
        rasterize(v, bad, 0, 0)                        # nothing drawn: still checked
    with pytest.raises(ValueError, match=r"meshes\[1\] triangles\[3, 0\] = -1"):
        rasterize_batch([(v, t), (v, bad)], H, W, num_threads=2)
    with pytest.raises(ValueError, match=r"meshes\[0\] triangles\[3, 0\] = -1"):
        render_attributes_batch([(v, bad, a)], H, W)


def test_interpolate_checks_the_triangles_and_ids_it_uses():
    v, t, a = SMALL
    raster = rasterize(v, t, H, W)
    used = int(raster.triangle_id[raster.mask][0])
    bad = t.copy()
    bad[used, 1] = 99
    with pytest.raises(ValueError, match=rf"triangles\[{used}, 1\] = 99 is out of range for 12 vertices"):
        interpolate(a, raster, bad)
    with pytest.raises(ValueError, match="triangle id 5 is out of range for 5 triangles"):
        interpolate(a, raster._replace(triangle_id=np.where(raster.mask, 5, -1).astype(np.int32)), t[:5])


def test_inputs_of_the_right_dtype_and_layout_are_not_copied():
    v, t, _ = BIG
    assert as_vertices(v) is v
    assert as_kernel_triangles(t, len(v)) is t
    assert as_kernel_triangles(t.astype(np.int64), len(v)).dtype == np.int32
    assert as_kernel_triangles(np.asfortranarray(t), len(v)).flags.c_contiguous
