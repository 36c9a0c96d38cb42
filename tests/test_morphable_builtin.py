"""The embedded model: sizes, anatomy of the landmarks, UVs, regions, determinism, cache."""

import numpy as np
import pytest

from face3d_data.morphable import REGIONS, builtin_model
from face3d_data.morphable.builtin import cache_path, generate_builtin_model


@pytest.fixture(scope="module")
def model():
    return generate_builtin_model()


def test_sizes_and_units(model):
    assert 5000 <= model.n_vertices <= 15000
    assert model.n_shape >= 20 and model.n_exp >= 10 and model.n_tex >= 5
    assert model.convention == "raw"
    width = np.ptp(model.mean[model.landmarks[:17], 0])
    assert 1.0e5 < width < 2.0e5  # BFM-like micrometre units
    assert np.abs(model.mean[model.landmarks].mean(0)[:2]).max() < 5e4  # centred near the origin
    norms = np.linalg.norm(model.basis_matrix, axis=0)
    np.testing.assert_allclose(norms, 1.0, rtol=1e-4)  # unit columns, stds carry the scale


def test_landmarks_are_anatomically_placed(model):
    lm = model.mean[model.landmarks]
    x, y, z = lm.T
    assert len(np.unique(model.landmarks)) == 68
    assert np.argmin(y) == 8                                  # chin is the lowest point
    assert np.argmax(z) == 30                                 # nose tip is the most forward
    assert np.all(x[:8] < 0) and np.all(x[9:17] > 0)          # image-left jaw first (iBUG order)
    assert y[19] > y[37] > y[30] > y[51] > y[57] > y[8]       # brow > eye > nose tip > lips > chin
    assert x[36] < x[39] < x[42] < x[45]                      # eye corners left to right
    assert x[48] < x[51] < x[54] and abs(x[51]) < 1e3         # mouth corners around the midline
    mirror = [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
              26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 27, 28, 29, 30, 35, 34, 33, 32, 31,
              45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
              54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65]
    np.testing.assert_allclose(x, -x[mirror], atol=3e3)     # left-right symmetric within 3 mm
    np.testing.assert_allclose(y, y[mirror], atol=3e3)


def test_regions_contain_their_landmarks(model):
    reg = model.regions[model.landmarks]
    assert np.all(reg[36:48] == REGIONS["eyes"])
    assert np.all(reg[[30, 31, 33, 35]] == REGIONS["nose"])
    assert np.all(reg[48:68] == REGIONS["mouth"])
    assert set(np.unique(model.regions)) == set(REGIONS.values())


def test_uv_is_a_fold_free_parametrisation(model):
    uv = model.uv
    assert uv.min() >= 0 and uv.max() <= 1
    a, b, c = (uv[model.triangles[:, i]] for i in range(3))
    signed = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    assert np.all(signed > 0) or np.all(signed < 0)  # every triangle has the same orientation
    # u grows to the image right (model +x), v grows up (model +y) on the face
    lm = model.landmarks
    assert uv[lm[45], 0] > uv[lm[36], 0] and uv[lm[27], 1] > uv[lm[8], 1]


def test_modes_are_smooth_and_plausible(model):
    rng = np.random.default_rng(0)
    mean_edges = np.linalg.norm(model.mean[model.triangles[:, 0]] - model.mean[model.triangles[:, 1]], axis=1)
    for _ in range(5):
        v = model.vertices(rng.normal(size=model.n_shape) * model.shape_std * 2,
                           rng.normal(size=model.n_exp) * model.exp_std * 2)
        edges = np.linalg.norm(v[model.triangles[:, 0]] - v[model.triangles[:, 1]], axis=1)
        ratio = edges / np.maximum(mean_edges, 1.0)
        assert np.percentile(ratio, 99) < 3.0  # no tearing at 2σ
    colours = model.colors(rng.normal(size=model.n_tex) * model.tex_std)
    face = model.regions == REGIONS["face"]
    assert np.median(colours[face, 0]) > np.median(colours[face, 2])  # skin: red over blue


def test_contour_lines_hold_their_landmark(model):
    assert len(model.contour_lines) == 17
    for i, line in enumerate(model.contour_lines):
        assert model.landmarks[i] in line and len(line) >= 5


def test_deterministic_and_cached(tmp_path, monkeypatch, model):
    monkeypatch.setenv("FACE3D_DATA_CACHE", str(tmp_path))
    first = builtin_model()
    assert cache_path().is_file() and cache_path().parent == tmp_path
    np.testing.assert_array_equal(first.mean, model.mean)
    np.testing.assert_array_equal(first.shape_basis, model.shape_basis)
    np.testing.assert_array_equal(builtin_model().tex_mean, model.tex_mean)  # from the cache
    cache_path().write_bytes(b"corrupt")
    np.testing.assert_array_equal(builtin_model().landmarks, model.landmarks)  # regenerated
