"""Loaders: tiny fixtures in each real file format; detection by content; restricted unpickling."""

import os
import pickle

import numpy as np
import pytest
import scipy.io

from face3d_data.errors import InputError
from face3d_data.morphable.loaders import detect_format, load_model, load_uv
from face3d_data.morphable.safe_pickle import load_pickle
from face3d_data.morphable.testing import random_model, write_bfm_fixtures


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return write_bfm_fixtures(tmp_path_factory.mktemp("bfm"))


def expected_vertices(fx, sp, ep, fold_exp_mean=True, rows=None):
    """Independent reference in float64 from the fixture's ground-truth arrays."""
    mean = fx.raw["mean"][fx.trim] + (fx.exp_mu if fold_exp_mean else 0)
    v = mean + np.einsum("nck,k->nc", fx.raw["shape_pc"][fx.trim], sp) + np.einsum("nck,k->nc", fx.exp_pc, ep)
    return v if rows is None else v[rows]


def test_detect_format_by_content(fx, tmp_path):
    p = fx.paths
    assert detect_format(p["bfm2009"]) == "bfm2009"
    assert detect_format(p["face3d"]) == "face3d"
    assert detect_format(p["deep3d"]) == "deep3d"
    assert detect_format(p["3ddfa_dir"]) == "3ddfa"
    assert detect_format(p["3ddfa_dir"] / "w_exp_sim.npy") == "3ddfa"
    assert detect_format(p["3ddfa_v2"]) == "3ddfa_v2"
    renamed = tmp_path / "weird_name.bin"  # content, not the name, decides
    renamed.write_bytes(p["face3d"].read_bytes())
    assert detect_format(renamed) == "face3d"


def test_bfm2009_with_3ddfa_expression(fx):
    rng = np.random.default_rng(0)
    m = load_model(fx.paths["bfm2009"], exp=fx.paths["model_expression"], info=fx.paths["model_info"])
    assert m.n_vertices == len(fx.trim) and m.convention == "raw"
    np.testing.assert_array_equal(m.landmarks, fx.keypoints)
    np.testing.assert_array_equal(m.triangles, fx.tri)
    np.testing.assert_allclose(m.shape_std, fx.raw["shape_ev"], rtol=1e-6)  # EV are stds
    np.testing.assert_allclose(m.exp_std, fx.exp_ev, rtol=1e-6)
    sp, ep = rng.normal(size=m.n_shape) * m.shape_std, rng.normal(size=m.n_exp) * m.exp_std
    np.testing.assert_allclose(m.vertices(sp, ep), expected_vertices(fx, sp, ep), atol=2.0)
    np.testing.assert_allclose(m.colors(), fx.raw["tex_mu"][fx.trim], atol=1e-3)


def test_bfm2009_with_deep3d_expression_and_uv(fx):
    m = load_model(fx.paths["bfm2009"], exp=fx.paths["exp_pca_bin"], info=fx.paths["model_info"],
                   uv=fx.paths["bfm_uv"])
    ep = np.arange(1, m.n_exp + 1, dtype=float)
    np.testing.assert_allclose(m.vertices(None, ep), expected_vertices(fx, np.zeros(m.n_shape), ep, False), atol=1.0)
    np.testing.assert_allclose(m.uv, fx.uv, atol=1e-6)


def test_bfm2009_errors(fx, tmp_path):
    with pytest.raises(InputError, match="model_info"):
        load_model(fx.paths["bfm2009"])
    (tmp_path / "std_exp.txt").write_text("1 2\n")
    bad = tmp_path / "Exp_Pca.bin"
    bad.write_bytes(np.int32(5).tobytes() + b"\0" * 40)
    with pytest.raises(InputError, match="Exp_Pca.bin"):
        load_model(fx.paths["bfm2009"], exp=bad, info=fx.paths["model_info"])
    with pytest.raises(InputError, match="rows but the model"):
        load_model(fx.paths["face3d"], uv=_uv_file(tmp_path, 7))


def _uv_file(tmp_path, n):
    path = tmp_path / "uv.mat"
    scipy.io.savemat(path, {"UV": np.zeros((n, 2))})
    return path


def test_face3d_bfm_mat(fx):
    m = load_model(fx.paths["face3d"])
    rng = np.random.default_rng(1)
    sp, ep = rng.normal(size=m.n_shape) * m.shape_std, rng.normal(size=m.n_exp) * m.exp_std
    np.testing.assert_allclose(m.vertices(sp, ep), expected_vertices(fx, sp, ep), atol=2.0)
    np.testing.assert_array_equal(m.landmarks, fx.keypoints)
    np.testing.assert_array_equal(m.triangles, fx.tri)


def test_deep3d_front_is_normalized_in_bfm_units(fx):
    m = load_model(fx.paths["deep3d"])
    front = np.arange(len(fx.trim) - 10)
    assert m.convention == "normalized" and m.n_vertices == len(front)
    rng = np.random.default_rng(2)
    sp_raw = rng.normal(size=m.n_shape) * fx.raw["shape_ev"]
    ep_raw = rng.normal(size=m.n_exp) * fx.exp_ev
    sp_n, ep_n = sp_raw / fx.raw["shape_ev"], ep_raw / fx.exp_ev
    np.testing.assert_allclose(m.vertices(sp_n, ep_n), expected_vertices(fx, sp_raw, ep_raw, False, front),
                               atol=2.0)
    # the front subset of unit PCs is not unit-norm: raw stds are the subset's column norms
    raw = m.to_convention("raw")
    norms = np.linalg.norm((fx.raw["shape_pc"][fx.trim][front] * fx.raw["shape_ev"]).reshape(-1, m.n_shape), axis=0)
    np.testing.assert_allclose(raw.shape_std, norms, rtol=1e-4)


def test_3ddfa_configs_folder(fx):
    m = load_model(fx.paths["3ddfa_dir"])
    np.testing.assert_array_equal(m.landmarks, fx.keypoints)
    np.testing.assert_allclose(m.shape_std, fx.raw["shape_ev"], rtol=1e-5)  # from param_whitening.pkl
    ep = np.ones(m.n_exp)
    np.testing.assert_allclose(m.vertices(None, ep), expected_vertices(fx, np.zeros(m.n_shape), ep), atol=1.0)
    np.testing.assert_array_equal(m.triangles, fx.tri)


def test_3ddfa_v2_pickle(fx):
    m = load_model(fx.paths["3ddfa_v2"])
    np.testing.assert_array_equal(m.landmarks, fx.keypoints)
    np.testing.assert_array_equal(m.triangles, fx.tri)
    sp = np.ones(m.n_shape) * 1e4
    np.testing.assert_allclose(m.vertices(sp), expected_vertices(fx, sp, np.zeros(m.n_exp)), atol=1.0)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))


def test_malicious_pickle_raises_and_never_executes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bfm_noneck_v3.pkl"
    with open(path, "wb") as f:
        pickle.dump({"u": np.zeros(3), "w_shp": _Evil(), "w_exp": np.zeros(3)}, f)
    with pytest.raises(InputError, match="refusing to load global"):
        load_model(path)
    with pytest.raises(InputError, match="refusing"):
        load_pickle(path)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_plain_containers_and_numpy_load(tmp_path):
    path = tmp_path / "ok.pkl"
    obj = {"a": np.arange(5, dtype=np.float32), "b": [1, 2.5, "x"], "c": (np.int64(3), None)}
    for proto in (2, 4, 5):
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=proto)
        back = load_pickle(path)
        np.testing.assert_array_equal(back["a"], obj["a"]) and back["b"] == obj["b"]


def test_unknown_file_lists_formats(tmp_path):
    path = tmp_path / "mystery.mat"
    scipy.io.savemat(path, {"foo": np.zeros(3)})
    with pytest.raises(InputError) as info:
        load_model(path)
    msg = str(info.value)
    assert "foo" in msg and "shapeMU" in msg and "meanshape" in msg and "u_shp.npy" in msg
    (tmp_path / "junk.bin").write_bytes(b"hello")
    with pytest.raises(InputError, match="unknown model format"):
        load_model(tmp_path / "junk.bin")
    with pytest.raises(InputError, match="no such"):
        load_model(tmp_path / "absent.mat")


def test_native_npz_and_builtin(tmp_path):
    m = random_model(100, 3, 2, seed=1)
    m.save(tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.mean, m.mean)
    assert load_model("builtin").n_vertices > 5000


def test_load_uv(fx):
    np.testing.assert_allclose(load_uv(fx.paths["bfm_uv"]), fx.uv, atol=1e-6)
    with pytest.raises(InputError, match="uv="):
        load_model(fx.paths["bfm_uv"])


def test_face3d_export_round_trip(fx, tmp_path):
    from face3d_data.io import write_mat
    from face3d_data.morphable.loaders import face3d_bfm_fields

    m = load_model(fx.paths["bfm2009"], exp=fx.paths["model_expression"], info=fx.paths["model_info"])
    write_mat(tmp_path / "BFM.mat", face3d_bfm_fields(m))
    back = load_model(tmp_path / "BFM.mat")
    rng = np.random.default_rng(4)
    sp, ep = rng.normal(size=m.n_shape) * m.shape_std, rng.normal(size=m.n_exp) * m.exp_std
    np.testing.assert_allclose(back.vertices(sp, ep), m.vertices(sp, ep), atol=1e-2)
    np.testing.assert_array_equal(back.landmarks, m.landmarks)
    np.testing.assert_array_equal(back.triangles, m.triangles)


def test_fix_bfm_uv_uses_one_ring_mean():
    from face3d_data.morphable.loaders import fix_bfm_uv
    from face3d_data.morphable.testing import grid_triangles

    tri = grid_triangles(5, 5)
    uv = np.random.default_rng(0).uniform(size=(25, 2))
    fixed = fix_bfm_uv(uv, tri, bad=(12,))
    ring = np.unique(tri[np.any(tri == 12, axis=1)])
    ring = ring[ring != 12]
    np.testing.assert_allclose(fixed[12], uv[ring].mean(0), rtol=1e-6)
    np.testing.assert_allclose(np.delete(fixed, 12, 0), np.delete(uv, 12, 0), rtol=1e-6)


def test_model_report_orthonormality():
    from face3d_data.morphable import MorphableModel
    from face3d_data.morphable.checks import model_report

    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(300, 6)))
    basis = q.reshape(100, 3, 6)
    m = MorphableModel(np.zeros((100, 3)), basis, np.ones(6), basis[..., :2] * 2, np.ones(2),
                       landmarks=np.arange(68))
    rep = model_report(m)
    assert rep["n_vertices"] == 100 and rep["shape_basis"]["max_off_diagonal"] < 1e-6
    assert rep["shape_basis"]["max_norm_error"] < 1e-6
    assert rep["exp_basis"]["max_norm_error"] == pytest.approx(1.0, rel=1e-5)  # columns of norm 2
