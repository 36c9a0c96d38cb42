"""fit_landmarks on synthetic faces with known pose/shape (random and builtin models)."""

import numpy as np
import pytest

from face3d_data.fitting import fit_landmarks
from face3d_data.fitting.landmark_basis import landmark_basis
from face3d_data.fitting.synthetic import synthetic_faces
from face3d_data.morphable import MorphableModel
from face3d_data.morphable.builtin import builtin_model
from face3d_data.morphable.testing import random_model
from face3d_data.w300lp.pose import project


@pytest.fixture(scope="module")
def builtin():
    return builtin_model()


@pytest.fixture(scope="module")
def landmark_only():
    """A 68-vertex model with 40 + 10 modes and no mesh (what the benchmark's small model is)."""
    m = random_model(400, 40, 10, seed=3)
    return MorphableModel(m.mean[m.landmarks], m.shape_basis[m.landmarks], m.shape_std,
                          m.exp_basis[m.landmarks], m.exp_std, landmarks=np.arange(68), name="lm68")


def angle_errors_deg(result, faces):
    return np.degrees(np.abs(result.pose_para[:, :3] - faces.pose_para[:, :3]))


def test_exact_landmarks_builtin_recover_pose(builtin):
    faces = synthetic_faces(builtin, 40, seed=1)
    # Noise-free landmarks: λ (the assumed landmark noise variance, px²) is small.
    r = fit_landmarks(faces.landmarks, builtin, faces.image_hw, lambda_shape=0.03, lambda_exp=0.03,
                      contour="fixed")
    err = angle_errors_deg(r, faces)
    assert np.all(err.mean(axis=0) < 0.5), err.mean(axis=0)
    assert r.error_px.mean() <= 0.1
    # The Pose_Para really is the 300W-LP convention: w300lp.pose.project reproduces the fit.
    verts = builtin.vertices(r.shape_para[0], r.exp_para[0])[builtin.landmarks]
    np.testing.assert_allclose(project(verts, r.pose_para[0], faces.image_hw)[:, :2], r.landmarks[0],
                               atol=1e-3)


def test_exact_landmarks_landmark_only_model(landmark_only):
    faces = synthetic_faces(landmark_only, 30, seed=2)
    r = fit_landmarks(faces.landmarks, landmark_only, faces.image_hw, lambda_shape=0.01, lambda_exp=0.01)
    assert r.contour == "fixed"                      # no mesh, no contour lines: fixed vertices
    assert angle_errors_deg(r, faces).max() < 0.5
    assert r.error_px.max() <= 0.1
    np.testing.assert_allclose(r.pose_para[:, 6], faces.pose_para[:, 6], rtol=1e-2)


def test_noisy_landmarks_error_near_noise_level(builtin):
    sigma = 2.0
    faces = synthetic_faces(builtin, 40, seed=4, noise_px=sigma)
    r = fit_landmarks(faces.landmarks, builtin, faces.image_hw, lambda_shape=sigma ** 2,
                      lambda_exp=sigma ** 2, contour="fixed")
    expected = sigma * np.sqrt(np.pi / 2)            # mean length of a 2D N(0, σ²) offset
    assert 0.5 * expected < r.error_px.mean() < 1.3 * expected
    to_clean = np.linalg.norm(r.landmarks - faces.clean, axis=2).mean()
    assert to_clean < r.error_px.mean()              # the fit denoises rather than overfits
    assert np.all(angle_errors_deg(r, faces).mean(axis=0) < 3.0)


@pytest.mark.parametrize("yaw", [(60.0, 90.0), (-90.0, -60.0)])
def test_profiles_marching_beats_fixed(builtin, yaw):
    faces = synthetic_faces(builtin, 24, seed=5, yaw_deg=yaw, silhouette=True)
    march = fit_landmarks(faces.landmarks, builtin, faces.image_hw, contour="marching")
    fixed = fit_landmarks(faces.landmarks, builtin, faces.image_hw, contour="fixed")
    assert march.contour == "marching"
    assert march.error_px.mean() < 0.75 * fixed.error_px.mean()
    assert np.median(angle_errors_deg(march, faces)[:, 1]) < np.median(angle_errors_deg(fixed, faces)[:, 1])
    # Away-side jaw landmarks were re-assigned to other vertices than the fixed ones.
    assert np.any(march.vertex_indices[:, :17] != builtin.landmarks[:17])


def test_contour_lines_derived_from_mesh(builtin):
    kw = builtin._arrays()
    kw["contour_lines"] = None
    no_lines = MorphableModel(**kw)
    basis = landmark_basis(no_lines, "marching")
    assert basis.candidates is not None and basis.candidates.shape[0] == 17
    faces = synthetic_faces(builtin, 16, seed=6, yaw_deg=(60.0, 85.0), silhouette=True)
    march = fit_landmarks(faces.landmarks, no_lines, faces.image_hw, contour="marching")
    fixed = fit_landmarks(faces.landmarks, no_lines, faces.image_hw, contour="fixed")
    assert march.error_px.mean() < fixed.error_px.mean()


def test_batch_equals_single(builtin):
    faces = synthetic_faces(builtin, 5, seed=7, yaw_deg=(-80, 80), noise_px=1.0, silhouette=True)
    lms = faces.landmarks.copy()
    lms[2, [3, 40, 50]] = np.nan                     # missing points in one face only
    batch = fit_landmarks(lms, builtin, faces.image_hw)
    for b in range(5):
        one = fit_landmarks(lms[b], builtin, faces.image_hw)
        np.testing.assert_allclose(one.pose_para, batch.pose_para[b], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(one.shape_para, batch.shape_para[b], rtol=1e-7,
                                   atol=1e-7 * np.abs(batch.shape_para[b]).max())
        np.testing.assert_array_equal(one.vertex_indices, batch.vertex_indices[b])
        assert one.error_px == pytest.approx(batch.error_px[b], rel=1e-9)


def test_primal_and_dual_solves_agree():
    model = random_model(300, 30, 8, seed=8)
    faces = synthetic_faces(model, 6, seed=8, noise_px=0.5)
    weights = np.ones(68)
    weights[30:36] = 0.5
    a = fit_landmarks(faces.landmarks, model, faces.image_hw, contour="fixed", weights=weights, method="primal")
    b = fit_landmarks(faces.landmarks, model, faces.image_hw, contour="fixed", weights=weights, method="dual")
    np.testing.assert_allclose(a.pose_para, b.pose_para, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(a.shape_para, b.shape_para, rtol=1e-6, atol=1e-6 * np.abs(a.shape_para).max())


def test_missing_points_equal_zero_weights(landmark_only):
    faces = synthetic_faces(landmark_only, 3, seed=9, noise_px=0.5)
    missing = faces.landmarks.copy()
    missing[:, 48:60] = np.nan
    weights = np.ones((3, 68))
    weights[:, 48:60] = 0.0
    a = fit_landmarks(missing, landmark_only, faces.image_hw)
    b = fit_landmarks(faces.landmarks, landmark_only, faces.image_hw, weights=weights)
    np.testing.assert_allclose(a.pose_para, b.pose_para, rtol=1e-10, atol=1e-10)
    assert np.all(np.isfinite(a.landmarks))         # every landmark is still reprojected
    assert angle_errors_deg(a, faces).max() < 3.0


def test_single_face_shapes(landmark_only):
    faces = synthetic_faces(landmark_only, 1, seed=10)
    r = fit_landmarks(faces.landmarks[0], landmark_only, faces.image_hw)
    assert r.pose_para.shape == (7,) and r.shape_para.shape == (40,) and r.exp_para.shape == (10,)
    assert r.landmarks.shape == (68, 2) and isinstance(r.error_px, float)
    assert r.error_normalized == pytest.approx(
        r.error_px / np.sqrt(np.prod(np.ptp(faces.landmarks[0], axis=0))))


@pytest.mark.parametrize("change, message", [
    (lambda p: p[:60], "landmarks"),
    (lambda p: np.where(np.arange(68)[:, None] == 3, np.inf, p), "infinite"),
    (lambda p: np.where(np.arange(68)[:, None] < 63, np.nan, p), "usable points"),
    (lambda p: np.zeros_like(p) + 5.0, "coincide"),
    (lambda p: np.column_stack([np.arange(68.0), 2 * np.arange(68.0) + 1]), "collinear"),
])
def test_bad_landmarks_raise_clear_errors(landmark_only, change, message):
    pts = synthetic_faces(landmark_only, 1, seed=11).landmarks[0]
    with pytest.raises(ValueError, match=message):
        fit_landmarks(change(pts), landmark_only, (450, 450))


def test_bad_options_raise_clear_errors(landmark_only):
    pts = synthetic_faces(landmark_only, 1, seed=12).landmarks[0]
    for kwargs, message in [({"image_hw": (0, 450)}, "image_hw"), ({"contour": "snake"}, "contour"),
                            ({"lambda_shape": 0.0}, "lambda_shape"), ({"iterations": 0}, "iterations"),
                            ({"weights": np.ones(5)}, "weights"), ({"weights": -np.ones(68)}, "weights")]:
        args = {"image_hw": (450, 450), **kwargs}
        with pytest.raises(ValueError, match=message):
            fit_landmarks(pts, landmark_only, **args)
    batch = np.stack([pts, pts])
    batch[1, :63] = np.nan
    with pytest.raises(ValueError, match=r"landmarks\[1\]"):
        fit_landmarks(batch, landmark_only, (450, 450))
