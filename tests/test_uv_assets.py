"""PRNet UV assets: masks, keypoint indices, masked-grid triangulation, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from face3d_data.morphable import REGIONS
from face3d_data.morphable.testing import random_model
from face3d_data.posmap import DEFAULT_WEIGHT_LEVELS, build_uv_assets, triangulate_mask, uv_to_texels


@pytest.fixture(scope="module")
def model():
    m = random_model(2500, 2, 1, seed=3)
    regions = m.regions.copy()
    x, y = m.mean[:, 0] / 1.5e5, m.mean[:, 1] / 1.8e5
    regions[(regions == 1) & (np.abs(x) < 0.08) & (np.abs(y) < 0.1)] = REGIONS["nose"]
    regions[(regions == 1) & (y > 0.15)] = REGIONS["eyes"]
    m.regions = regions
    return m


def test_uv_texel_frame():
    np.testing.assert_allclose(uv_to_texels(np.array([[0, 0], [1, 1], [0.5, 0.25]]), 256),
                               [[0, 255], [255, 0], [127.5, 191.25]])


def test_masks_follow_regions(model):
    a = build_uv_assets(model, 96)
    covered = a.raster.triangle_id >= 0
    assert a.face_mask.dtype == bool and a.face_mask.shape == (96, 96)
    assert np.array_equal(a.face_mask, covered & (a.region_map != REGIONS["neck"]))
    assert np.array_equal(a.face_ind, np.flatnonzero(a.face_mask))
    # independent: each covered texel's region is that of its triangle's corner with the
    # largest barycentric weight (solved here in float64)
    texels = uv_to_texels(model.uv, 96)
    rng = np.random.default_rng(0)
    for row, col in zip(*np.nonzero(covered)):
        if rng.random() > 0.05:
            continue
        tri = model.triangles[a.raster.triangle_id[row, col]]
        p = texels[tri]
        lam = np.linalg.solve(np.vstack([p.T, np.ones(3)]), [col, row, 1.0])
        assert lam.min() > -1e-6
        if np.sort(lam)[-2] < lam.max() - 1e-3:  # skip ties
            assert a.region_map[row, col] == model.regions[tri[np.argmax(lam)]]
    levels = DEFAULT_WEIGHT_LEVELS
    w = a.weight_mask
    kpt = np.zeros_like(a.face_mask)
    kpt[a.kpt_ind[1], a.kpt_ind[0]] = True
    assert np.all(w[~covered & ~kpt] == 0)
    assert np.all(w[(a.region_map == REGIONS["nose"]) & ~kpt] == levels["nose"])
    assert np.all(w[(a.region_map == REGIONS["face"]) & ~kpt] == levels["face"])
    assert np.all(w[(a.region_map == REGIONS["neck"]) & ~kpt] == levels["neck"])
    assert np.all(w[kpt] == levels["landmarks"])
    # PRNet paper ratio 68 keypoints : eyes, nose, mouth : rest of face : neck = 16 : 4 : 3 : 0
    assert set(np.unique(w)) == {0, 3, 4, 16}
    assert (levels["landmarks"], levels["eyes"], levels["nose"], levels["mouth"], levels["face"],
            levels["neck"]) == (16, 4, 4, 4, 3, 0)
    custom = build_uv_assets(model, 96, weight_levels={"face": 5, "neck": 1, "landmarks": 255})
    assert set(np.unique(custom.weight_mask)) == {0, 1, 4, 5, 255}
    with pytest.raises(ValueError, match="weight_levels"):
        build_uv_assets(model, 96, weight_levels={"ears": 3})
    with pytest.raises(ValueError, match="weight_levels"):
        build_uv_assets(model, 96, weight_levels={"face": 300})


def test_keypoints_are_rounded_landmark_uvs(model):
    a = build_uv_assets(model, 256)
    exact = uv_to_texels(model.uv[model.landmarks], 256).T
    np.testing.assert_allclose(a.kpt_uv, exact)
    assert a.kpt_ind.shape == (2, 68) and a.kpt_ind.dtype.kind == "i"
    assert np.abs(a.kpt_ind - exact).max() <= 0.5


def test_assets_regenerate_identically_at_any_resolution(model):
    for res in (64, 256, 300):
        a, b = build_uv_assets(model, res), build_uv_assets(model, res)
        for name in ("face_mask", "weight_mask", "kpt_ind", "face_ind", "grid_triangles"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert a.face_mask.shape == (res, res)
    with pytest.raises(ValueError, match="resolution"):
        build_uv_assets(model, 4)


def _brute_force_cells(mask):
    """Expected triangle count: 2 per full 2x2 cell, 1 per cell with exactly 3 texels."""
    count = 0
    for y in range(mask.shape[0] - 1):
        for x in range(mask.shape[1] - 1):
            n = int(mask[y:y + 2, x:x + 2].sum())
            count += 2 if n == 4 else (1 if n == 3 else 0)
    return count


def test_triangulate_mask_counts_and_winding():
    rng = np.random.default_rng(1)
    mask = rng.random((23, 31)) < 0.7
    tri = triangulate_mask(mask)
    assert len(tri) == _brute_force_cells(mask)
    pts = np.stack(np.nonzero(mask)[::-1], 1).astype(float)  # (x, y) of face_ind order
    assert tri.min() >= 0 and tri.max() < len(pts)
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    assert np.all(cross == -1)  # unit right triangles, counter-clockwise as displayed (y down)
    # every triangle joins texels of one 2x2 cell
    span = np.ptp(pts[tri], axis=1)
    assert np.all(span <= 1)
    # no triangle is repeated
    assert len(np.unique(np.sort(tri, axis=1), axis=0)) == len(tri)


def test_assets_need_uv_and_triangles():
    with pytest.raises(ValueError, match="UV"):
        build_uv_assets(random_model(200, 2, 1, with_uv=False), 64)
