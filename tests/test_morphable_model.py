"""MorphableModel: the linear formula, conventions, subset, native format."""

import numpy as np
import pytest

from face3d_data.errors import InputError
from face3d_data.morphable import MorphableModel
from face3d_data.morphable.testing import random_model


@pytest.fixture(scope="module")
def model():
    return random_model(400, 12, 6, seed=3, n_tex=4)


def explicit(model, sp, ep):
    """Independent reference: per-vertex loops over components in float64."""
    out = model.mean.astype(np.float64).copy()
    for k in range(len(sp)):
        out += model.shape_basis[:, :, k].astype(np.float64) * sp[k]
    for k in range(len(ep)):
        out += model.exp_basis[:, :, k].astype(np.float64) * ep[k]
    return out


def test_vertices_equals_explicit_formula_single_and_batch(model):
    rng = np.random.default_rng(0)
    sp = rng.standard_normal((5, model.n_shape)) * model.shape_std
    ep = rng.standard_normal((5, model.n_exp)) * model.exp_std
    batch = model.vertices(sp, ep)
    assert batch.shape == (5, model.n_vertices, 3) and batch.dtype == np.float32
    scale = np.abs(explicit(model, sp[0], ep[0])).max()
    for b in range(5):
        np.testing.assert_allclose(batch[b], explicit(model, sp[b], ep[b]), atol=1e-5 * scale * 10)
    one = model.vertices(sp[1], ep[1])
    assert one.shape == (model.n_vertices, 3)
    np.testing.assert_allclose(one, batch[1], rtol=0, atol=1e-6 * scale * 10)
    # 300W-LP column vectors (K, 1) are one face
    np.testing.assert_allclose(model.vertices(sp[1][:, None], ep[1][:, None]), one, atol=1e-6 * scale * 10)


def test_vertices_partial_and_missing_coefficients(model):
    sp = np.zeros(model.n_shape)
    sp[:3] = [1e5, -2e5, 3e4]
    np.testing.assert_allclose(model.vertices(sp[:3]), explicit(model, sp, np.zeros(model.n_exp)), atol=0.5)
    ep = np.arange(model.n_exp, dtype=float)
    np.testing.assert_allclose(model.vertices(None, ep), explicit(model, np.zeros(1), ep), atol=0.5)
    np.testing.assert_array_equal(model.vertices(), model.mean)
    np.testing.assert_allclose(model.vertices(sp[:3], ep), explicit(model, sp, ep), atol=0.5)


def test_bases_are_views_not_copies(model):
    assert np.shares_memory(model.shape_basis, model.basis_matrix)
    assert np.shares_memory(model.exp_basis, model.basis_matrix)


@pytest.mark.parametrize("bad, msg", [(np.zeros(13), "shape_para"), (np.full(12, np.nan), "NaN")])
def test_vertices_rejects_bad_coefficients(model, bad, msg):
    with pytest.raises(ValueError, match=msg):
        model.vertices(bad)


def test_conventions_round_trip_and_same_geometry(model):
    rng = np.random.default_rng(1)
    sp_raw = rng.standard_normal(model.n_shape) * model.shape_std
    ep_raw = rng.standard_normal(model.n_exp) * model.exp_std
    norm = model.to_convention("normalized")
    assert norm.convention == "normalized"
    np.testing.assert_array_equal(norm.shape_std, 1.0)
    sp_n = model.convert_coefficients(sp_raw, "shape", "normalized")
    ep_n = model.convert_coefficients(ep_raw, "exp", "normalized")
    np.testing.assert_allclose(sp_n, sp_raw / model.shape_std, rtol=1e-6)
    scale = np.abs(model.mean).max()
    np.testing.assert_allclose(norm.vertices(sp_n, ep_n), model.vertices(sp_raw, ep_raw), atol=1e-5 * scale)
    back = norm.to_convention("raw")
    np.testing.assert_allclose(back.shape_std, model.shape_std, rtol=1e-6)
    np.testing.assert_allclose(back.shape_basis, model.shape_basis, atol=1e-6)
    np.testing.assert_allclose(norm.convert_coefficients(sp_n, "shape", "raw"), sp_raw, rtol=1e-6)
    tn = model.convert_coefficients(np.ones(model.n_tex), "tex", "normalized")
    np.testing.assert_allclose(norm.colors(tn), model.colors(np.ones(model.n_tex)), atol=1e-3)


def test_normalized_to_raw_without_stored_stds_uses_column_norms():
    raw = random_model(200, 5, 3, seed=4)  # unit-norm columns, like BFM PCs
    norm = raw.to_convention("normalized")
    bare = MorphableModel(norm.mean, norm.shape_basis, norm.shape_std, norm.exp_basis, norm.exp_std,
                          landmarks=norm.landmarks, convention="normalized")
    np.testing.assert_allclose(bare.to_convention("raw").shape_std, raw.shape_std, rtol=1e-5)


def test_subset_keeps_triangles_landmarks_uv_consistent(model):
    rng = np.random.default_rng(2)
    keep = np.union1d(rng.choice(model.n_vertices, 300, replace=False), model.landmarks)
    keep = np.union1d(keep, np.concatenate(model.contour_lines))
    order = rng.permutation(keep)  # arbitrary new order
    sub = model.subset(order, expected_n_vertices=len(order))
    assert sub.n_vertices == len(order)
    # every kept triangle maps back to an original triangle whose corners were all kept
    orig = {tuple(t) for t in model.triangles.tolist()}
    mapped = order[sub.triangles]
    assert all(tuple(t) in orig for t in mapped.tolist())
    expected_count = int(np.sum(np.all(np.isin(model.triangles, order), axis=1)))
    assert len(sub.triangles) == expected_count and sub.triangles.max() < sub.n_vertices
    np.testing.assert_array_equal(order[sub.landmarks], model.landmarks)
    np.testing.assert_array_equal(sub.uv, model.uv[order])
    np.testing.assert_array_equal(sub.regions, model.regions[order])
    for new, old in zip(sub.contour_lines, model.contour_lines):
        np.testing.assert_array_equal(order[new], old)
    sp = rng.standard_normal(model.n_shape) * model.shape_std
    np.testing.assert_allclose(sub.vertices(sp), model.vertices(sp)[order], atol=1e-2)
    np.testing.assert_allclose(sub.colors(), model.colors()[order])


def test_subset_errors(model):
    with pytest.raises(ValueError, match="expected 10"):
        model.subset(np.arange(model.n_vertices), expected_n_vertices=10)
    with pytest.raises(ValueError, match="duplicates"):
        model.subset(np.r_[np.arange(model.n_vertices), 0])
    drop = np.setdiff1d(np.arange(model.n_vertices), model.landmarks[:1])
    with pytest.raises(ValueError, match="landmark"):
        model.subset(drop)
    with pytest.raises(ValueError, match="vertex_indices"):
        model.subset([model.n_vertices])


def test_save_load_round_trip(model, tmp_path):
    path = tmp_path / "m.npz"
    model.to_convention("normalized").save(path)
    back = MorphableModel.load(path)
    assert back.convention == "normalized" and back.name == model.name
    for attr in ("mean", "shape_basis", "exp_basis", "shape_std", "exp_std", "tex_mean", "tex_basis",
                 "triangles", "landmarks", "uv", "regions"):
        a, b = getattr(model.to_convention("normalized"), attr), getattr(back, attr)
        np.testing.assert_array_equal(a, b, err_msg=attr)
    assert back.mean.dtype == np.float32 and back.triangles.dtype == np.int32
    for a, b in zip(model.contour_lines, back.contour_lines):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(back.to_convention("raw").shape_std, model.shape_std, rtol=1e-6)


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        MorphableModel.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(InputError, match="missing arrays"):
        MorphableModel.load(other)


def test_constructor_validates_arguments():
    mean = np.zeros((70, 3))
    with pytest.raises(ValueError, match="shape_basis"):
        MorphableModel(mean, np.zeros((69, 3, 2)), np.ones(2), np.zeros((70, 3, 0)), np.ones(0),
                       landmarks=np.arange(68))
    with pytest.raises(ValueError, match="landmarks"):
        MorphableModel(mean, np.zeros((70, 3, 2)), np.ones(2), np.zeros((70, 3, 0)), np.ones(0),
                       landmarks=np.arange(67))
    with pytest.raises(ValueError, match="triangles"):
        MorphableModel(mean, np.zeros((70, 3, 2)), np.ones(2), np.zeros((70, 3, 0)), np.ones(0),
                       landmarks=np.arange(68), triangles=[[0, 1, 70]])
    with pytest.raises(ValueError, match="mean"):
        MorphableModel(np.full((70, 3), np.nan), np.zeros((70, 3, 2)), np.ones(2),
                       np.zeros((70, 3, 0)), np.ones(0), landmarks=np.arange(68))
    # a landmarks-only model (no triangles) is valid
    lm_only = MorphableModel(np.zeros((68, 3)), np.zeros((68, 3, 2)), np.ones(2), np.zeros((68, 3, 1)),
                             np.ones(1), landmarks=np.arange(68))
    assert lm_only.triangles is None and lm_only.vertices(np.ones(2)).shape == (68, 3)
