"""interpolate_planned: the fixed-raster path (UV position maps) gives interpolate's bytes."""

import numpy as np
import pytest

from face3d_data.render import interpolate, rasterize
from face3d_data.render.raster import interpolate_planned, interpolation_plan

H, W = 40, 48


def _mesh(seed, n_vertices, n_triangles, lo, hi):
    rng = np.random.default_rng(seed)
    v = rng.uniform(lo, hi, (n_vertices, 3)).astype(np.float32)
    t = rng.integers(0, n_vertices, (n_triangles, 3)).astype(np.int32)
    return v, t


@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4, 7])
@pytest.mark.parametrize("seed,lo,hi", [(0, -10, 60), (1, 15, 30)])
def test_planned_equals_interpolate(channels, seed, lo, hi):
    v, t = _mesh(seed, 300, 600, lo, hi)
    raster = rasterize(v, t, H, W)
    plan = interpolation_plan(raster, t)
    rng = np.random.default_rng(seed + 10)
    for dtype in (np.float32, np.float64, np.int16):
        shape = (300,) if channels is None else (300, channels)
        attributes = (rng.normal(0, 50, shape) * rng.choice([1e-3, 1, 1e4], (300,) + shape[1:])).astype(dtype)
        expected = interpolate(attributes, raster, t)
        ours = interpolate_planned(attributes, plan)
        assert ours.dtype == expected.dtype and ours.shape == expected.shape
        assert ours.tobytes() == expected.tobytes()
        out = np.full(expected.shape, np.nan, np.float32)
        assert interpolate_planned(attributes, plan, out=out) is out and out.tobytes() == expected.tobytes()


def test_plan_is_a_copy_and_falls_back_with_interpolates_errors():
    v, t = _mesh(2, 50, 80, -5, 50)
    raster = rasterize(v, t, H, W)
    plan = interpolation_plan(raster, t)
    attributes = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    expected = interpolate(attributes, raster, t)
    t_orig, ids = t.copy(), raster.triangle_id.copy()
    t[:] = 0   # the plan does not follow the caller's arrays
    raster.triangle_id[:] = -1
    assert interpolate_planned(attributes, plan).tobytes() == expected.tobytes()
    t[:], raster.triangle_id[:] = t_orig, ids
    # too few vertices for the plan: interpolate's own error
    with pytest.raises(ValueError, match="out of range for 10 vertices"):
        interpolate_planned(attributes[:10], plan)
    # a triangle id beyond the triangles is an error when the plan is made
    with pytest.raises(ValueError, match="triangle id .* out of range for 5 triangles"):
        interpolation_plan(raster, np.zeros((5, 3), np.int32))
    with pytest.raises(ValueError, match="raster: expected"):
        interpolation_plan(raster._replace(barycentric=raster.barycentric[..., :2]), t)
    # triangles with negative or non-integer indices: the plan is unusable, interpolate decides
    bad = np.where(t == 0, -1, t)
    bad_plan = interpolation_plan(raster, bad)
    assert not bad_plan.valid
    float_plan = interpolation_plan(raster, np.asarray(plan.triangles, np.float64))
    assert not float_plan.valid
    assert interpolate_planned(attributes, float_plan).tobytes() == expected.tobytes()


def test_empty_raster_plan():
    v, t = _mesh(3, 10, 4, 1000, 2000)   # off-screen: every pixel background
    raster = rasterize(v, t, H, W)
    plan = interpolation_plan(raster, t)
    attributes = np.ones((10, 3), np.float32)
    assert (plan.low, plan.high) == (0, -1)
    assert interpolate_planned(attributes, plan).tobytes() == interpolate(attributes, raster, t).tobytes()
