"""The posmap per-sample geometry path against its numpy reference, bit for bit.

The compiled affine pass (``face3d_data._raster.affine_into``), the in-place z shift
(``shift_min_z``), the shortened projection and the fused ``make_posmap_sample`` must give exactly
the bytes of the numpy formulas they replace (the posmap stage's outputs are byte-identical).
"""

from __future__ import annotations

import numpy as np
import pytest

from face3d_data import _raster
from face3d_data.morphable.testing import smooth_model
from face3d_data.posmap import (
    apply_affine,
    build_uv_assets,
    crop_affine,
    crop_matrix,
    crop_vertices,
    landmark_crop_box,
    make_posmap_sample,
    projection_affine,
    render_position_map,
)
from face3d_data.posmap.position_map import _apply_affine, _apply_affine_numpy, _shift_face_z
from face3d_data.render import interpolate
from face3d_data.w300lp import project

RES = 64


def _bits(a: np.ndarray) -> tuple:
    return a.dtype.str, a.shape, a.tobytes()


@pytest.fixture(scope="module")
def model():
    return smooth_model()


@pytest.fixture(scope="module")
def assets(model):
    return build_uv_assets(model, RES)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 17, 1000, 4099])
@pytest.mark.parametrize("points_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
def test_affine_kernel_equals_numpy_reference(n, points_dtype, out_dtype):
    rng = np.random.default_rng(n)
    points = (rng.standard_normal((n, 3)) * rng.choice([1e-3, 1.0, 1e3, 1e6], size=(n, 1))).astype(points_dtype)
    for affine in (rng.standard_normal((3, 4)) * 7, crop_affine(rng.standard_normal((2, 3)),
                                                               rng.standard_normal((3, 4)))):
        ours = apply_affine(points, affine, out_dtype)
        assert _bits(ours) == _bits(_apply_affine_numpy(points, affine, out_dtype))


def test_affine_kernel_layouts_and_other_dtypes():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 6)) * 100
    affine = rng.standard_normal((3, 4))
    for points in (base[:, ::2], base[:, :3].astype(np.float32), np.asfortranarray(base[:, 3:]),
                   (base[:, :3] * 1e3).astype(np.int64), base[:, :3].astype(np.float16), base[:, :3].tolist()):
        for dtype in (np.float32, np.float64) + (() if isinstance(points, list) else (np.float16,)):
            with np.errstate(over="ignore"):
                ref = _apply_affine_numpy(np.asarray(points), affine, dtype)
            with np.errstate(over="ignore"):
                assert _bits(apply_affine(points, affine, dtype)) == _bits(ref)
    # a float32 affine is used in float64, as the numpy formula does
    a32 = affine.astype(np.float32)
    assert _bits(apply_affine(base[:, :3], a32)) == _bits(_apply_affine_numpy(base[:, :3], a32))


def test_affine_kernel_reports_the_first_non_finite_row():
    rng = np.random.default_rng(2)
    points = rng.standard_normal((41, 3))
    affine = rng.standard_normal((3, 4))
    assert _apply_affine(points, affine, np.float32)[1] == -1
    bad = points.copy()
    bad[37, 2] = np.inf
    bad[19, 0] = np.nan
    out, row = _apply_affine(bad, affine, np.float32)
    assert row == 19 and _bits(out) == _bits(_apply_affine_numpy(bad, affine, np.float32))
    # finite in float64, infinite once stored as float32 (and only then)
    big = np.ones((9, 3))
    big[4] = 1e38
    scale = np.eye(3, 4) * 100
    assert _apply_affine(big, scale, np.float32)[1] == 4
    assert _apply_affine(big, scale, np.float64)[1] == -1
    # the numpy path reports too
    assert _apply_affine(bad.astype(np.float16), affine, np.float16)[1] == 19


def test_shift_min_z_equals_numpy():
    rng = np.random.default_rng(3)
    v = rng.standard_normal((500, 3)).astype(np.float32)
    subset = np.unique(rng.integers(0, 500, 200))
    expected = v.copy()
    expected[:, 2] -= expected[subset, 2].min()
    ours = v.copy()
    assert _raster.shift_min_z(ours, subset) == v[subset, 2].min()
    assert _bits(ours) == _bits(expected)
    # a zero minimum is left to numpy (it decides the sign of a -0 z)
    z = v.copy()
    z[:, 2] = np.abs(z[:, 2]) + 1
    z[subset[3], 2] = -0.0
    z[subset[5], 2] = 0.0
    z[7, 2] = -0.0
    untouched = z.copy()
    assert _raster.shift_min_z(z, subset) == 0 and _bits(z) == _bits(untouched)
    # out-of-range, negative or no indices and NaN: NaN back, nothing changed
    for sub in (np.array([0, 500]), np.array([-1]), np.array([], np.int64)):
        w = v.copy()
        assert np.isnan(_raster.shift_min_z(w, sub)) and _bits(w) == _bits(v)
    w = v.copy()
    w[subset[0], 2] = np.nan
    before = w.copy()
    assert np.isnan(_raster.shift_min_z(w, subset)) and _bits(w) == _bits(before)


def test_shift_face_z_signed_zero_and_fallbacks(model, assets):
    n = model.n_vertices
    rng = np.random.default_rng(4)
    v = np.abs(rng.standard_normal((n, 3))).astype(np.float32) + 1
    v[assets.face_vertices[::5], 2] = 0.0
    v[assets.face_vertices[1], 2] = -0.0
    v[0, 2] = -0.0
    expected = v.copy()
    expected[:, 2] -= expected[assets.face_vertices, 2].min()
    ours = v.copy()
    _shift_face_z(ours, assets)
    assert _bits(ours) == _bits(expected)
    with pytest.raises(IndexError):   # too few vertices: numpy's own error, as before
        _shift_face_z(v[:10].copy(), assets)


def _old_make_posmap_sample(image, vertices, landmarks, assets, projection, rng):
    """The numpy formulation the fused path replaces."""
    box = landmark_crop_box(_apply_affine_numpy(vertices[landmarks], projection), rng=rng)
    matrix = crop_matrix(box, assets.resolution)
    in_crop = _apply_affine_numpy(vertices, crop_affine(matrix, projection), np.float32)
    assert np.all(np.isfinite(in_crop))
    z_min = in_crop[assets.face_vertices, 2].min()
    v = np.array(in_crop, dtype=np.float32, copy=True)
    v[:, 2] -= v[assets.face_vertices, 2].min()
    posmap = interpolate(v, assets.raster, assets.triangles)
    lm = in_crop[landmarks].copy()
    lm[:, 2] -= z_min
    return box, matrix, posmap, lm


def _old_projection_affine(pose_para, image_hw):
    """The projection of the four unit points by the original project() code."""
    p = np.asarray(pose_para, np.float64).reshape(7)
    a = [np.asarray(x, dtype=np.float64) for x in p[:3]]
    pi, ya, ro = np.broadcast_arrays(*a)
    cp, sp, cy, sy, cr, sr = np.cos(pi), np.sin(pi), np.cos(ya), np.sin(ya), np.cos(ro), np.sin(ro)
    m = np.empty(pi.shape + (3, 3))
    m[..., 0, 0] = cr * cy
    m[..., 0, 1] = cr * sy * sp - sr * cp
    m[..., 0, 2] = cr * sy * cp + sr * sp
    m[..., 1, 0] = sr * cy
    m[..., 1, 1] = sr * sy * sp + cr * cp
    m[..., 1, 2] = sr * sy * cp - cr * sp
    m[..., 2, 0] = -sy
    m[..., 2, 1] = cy * sp
    m[..., 2, 2] = cy * cp
    R = np.swapaxes(m, -1, -2).copy()
    points = np.vstack([np.zeros(3), np.eye(3)])
    f = np.asarray(float(p[6]))[..., None, None]
    x = f * (points @ np.swapaxes(R, -1, -2)) + p[3:6].copy()[..., None, :]
    image = np.array(x, copy=True)
    image[..., 0] -= 1.0
    image[..., 1] = float(np.asarray(image_hw, np.float64).ravel()[0]) - image[..., 1]
    affine = np.empty((3, 4))
    affine[:, 3] = image[0]
    affine[:, :3] = (image[1:] - image[0]).T
    return affine


def test_projection_affine_equals_the_original_formula():
    rng = np.random.default_rng(5)
    poses = [rng.uniform(-1.5, 1.5, 7) * [1, 1, 1, 300, 300, 30, 1e-3] + [0, 0, 0, 0, 0, 0, 2e-3]
             for _ in range(300)]
    poses += [np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]), np.array([-0.0, 0.0, -0.0, -0.0, 0.0, -0.0, 1.0]),
              np.array([0.0, np.pi / 2, 0.0, 1.0, 2.0, 3.0, 1e-3]), np.array([[0.1, -0.2, 0.3, 4, 5, 6, 7e-4]])]
    for i, pose in enumerate(poses):
        hw = (450, 300) if i % 3 else np.array([451.0, 299.0])
        assert _bits(projection_affine(pose, hw)) == _bits(_old_projection_affine(pose, hw))
        assert _bits(projection_affine(pose.astype(np.float32), (450, 300))) == \
            _bits(_old_projection_affine(pose.astype(np.float32), (450, 300)))
    with pytest.raises(ValueError, match="image_hw"):
        projection_affine(poses[0], (0, 10))
    with pytest.raises(ValueError, match="pose_para"):
        projection_affine(np.full(7, np.nan), (10, 10))


def test_fused_sample_equals_numpy_path(model, assets):
    rng = np.random.default_rng(6)
    image = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    for k in range(6):
        vertices = model.vertices(rng.normal(size=model.n_shape) * model.shape_std,
                                  rng.normal(size=model.n_exp) * model.exp_std)
        if k % 2:
            vertices = vertices.astype(np.float64)
        pose = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-1, 1), rng.uniform(-0.3, 0.3),
                         150.0, 150.0, 0.0, rng.uniform(1e-3, 1.4e-3)])
        projection = projection_affine(pose, image.shape[:2])
        sample = make_posmap_sample(image, vertices, model.landmarks, assets, projection=projection,
                                    rng=np.random.default_rng(k))
        box, matrix, posmap, landmarks = _old_make_posmap_sample(image, vertices, model.landmarks, assets,
                                                                 projection, np.random.default_rng(k))
        assert _bits(sample.box.center) == _bits(box.center) and sample.box.size == box.size
        assert _bits(sample.matrix) == _bits(matrix)
        assert _bits(sample.posmap) == _bits(posmap)
        assert _bits(sample.landmarks) == _bits(landmarks)
        # the two-step path (projected vertices) and render_position_map keep their bytes too
        projected = project(vertices, pose, image.shape[:2])
        in_crop = crop_vertices(projected, matrix)
        assert _bits(in_crop) == _bits(_apply_affine_numpy(projected, crop_affine(matrix), np.float32))
        v = in_crop.copy()
        v[:, 2] -= v[assets.face_vertices, 2].min()
        assert _bits(render_position_map(in_crop, assets)) == _bits(interpolate(v, assets.raster, assets.triangles))


def test_non_finite_vertices_still_raise(model, assets):
    vertices = model.vertices(np.zeros(model.n_shape), np.zeros(model.n_exp)).copy()
    projection = projection_affine([0.1, 0.2, 0.0, 150, 150, 0, 1e-3], (300, 300))
    image = np.zeros((300, 300, 3), np.uint8)
    bad = vertices.copy()
    bad[np.setdiff1d(np.arange(len(bad)), model.landmarks)[5], 1] = np.nan
    with pytest.raises(ValueError, match="projected vertices contain NaN/inf"):
        make_posmap_sample(image, bad, model.landmarks, assets, projection=projection)
    with pytest.raises(ValueError, match="projected vertices contain NaN/inf"):
        make_posmap_sample(image, bad, model.landmarks, assets)
    huge = vertices.astype(np.float64)
    huge[np.setdiff1d(np.arange(len(huge)), model.landmarks)[0]] = 1e300   # inf only as float32
    with pytest.raises(ValueError, match="projected vertices contain NaN/inf"):
        make_posmap_sample(image, huge, model.landmarks, assets, projection=projection)
    with pytest.raises(ValueError, match="vertices contain NaN/inf"):
        render_position_map(bad, assets)
