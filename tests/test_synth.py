"""Synthetic 300W-LP samples: labels reproduce the image geometry exactly."""

import numpy as np
import pytest

from face3d_data.io import read_image, write_image
from face3d_data.morphable import builtin_model
from face3d_data.morphable.testing import random_model
from face3d_data.w300lp import labels_to_mat, project, read_labels, write_labels
from face3d_data.w300lp.synth import PoseDistribution, marched_landmarks, sh_basis, shade, synthesize


@pytest.fixture(scope="module")
def model():
    return builtin_model()


def test_pt2d_reproduced_from_saved_parameters(model, tmp_path):
    rng = np.random.default_rng(11)
    for i in range(3):
        s = synthesize(model, rng, image_size=450)
        path = tmp_path / f"s{i}.mat"
        write_labels(path, s.labels)
        lab = read_labels(path)
        v = model.vertices(lab.shape_para, lab.exp_para)
        pts = project(v[model.landmarks], lab.pose_para, (450, 450))[:, :2]
        np.testing.assert_allclose(pts, lab.pt2d, atol=1e-4)
        np.testing.assert_allclose(lab.pt3d_68[:, :2], lab.pt2d, atol=1e-3)  # stored as float32
        assert s.image.shape == (450, 450, 3) and s.image.dtype == np.uint8
        assert s.labels["Pose_Para"].shape == (1, 7) and s.labels["Pose_Para"].dtype == np.float32
        assert s.labels["Shape_Para"].shape == (model.n_shape, 1)
        assert s.labels["Exp_Para"].shape == (model.n_exp, 1)
        assert s.labels["pt2d"].shape == (2, 68) and s.labels["roi"].dtype == np.int16


def test_landmarks_lie_on_the_rendered_face(model):
    rng = np.random.default_rng(5)
    pose = PoseDistribution(yaw_range_deg=30)
    s = synthesize(model, rng, pose=pose)
    xy = np.round(s.landmarks).astype(int)
    inside = s.mask[xy[:, 1], xy[:, 0]]
    assert inside.mean() > 0.9  # frontal-ish: nearly every landmark is on covered pixels
    # the face region differs from the background: rendered pixels are skin-coloured on average
    face = s.image[s.mask].astype(float).mean(0)
    assert face[0] > face[2]  # skin: more red than blue


def test_yaw_range_is_respected_and_deterministic(model):
    a = synthesize(model, np.random.default_rng(3), yaw_range_deg=20)
    b = synthesize(model, np.random.default_rng(3), yaw_range_deg=20)
    np.testing.assert_array_equal(a.image, b.image)
    yaws = [synthesize(model, np.random.default_rng(i), yaw_range_deg=20).labels["Pose_Para"][0, 1]
            for i in range(8)]
    assert np.all(np.abs(yaws) <= np.deg2rad(20) + 1e-6)


def test_user_background_is_used(model):
    bg = np.zeros((300, 500, 3), np.uint8)
    bg[..., 1] = 255
    s = synthesize(model, np.random.default_rng(0), background=bg)
    outside = s.image[~s.mask]
    assert np.mean(np.all(outside == [0, 255, 0], axis=1)) > 0.97  # all but the anti-aliased rim
    hard = synthesize(model, np.random.default_rng(0), background=bg, antialias=1)
    assert np.all(hard.image[~hard.mask] == [0, 255, 0])
    assert abs(int(hard.mask.sum()) - int(s.mask.sum())) < 0.02 * hard.mask.sum()
    # supersampling keeps the geometry in place: same silhouette centroid to a fraction of a pixel
    c_hard = np.argwhere(hard.mask).mean(0)
    c_soft = np.argwhere(s.mask).mean(0)
    assert np.abs(c_hard - c_soft).max() < 0.3


def test_marched_jaw_moves_to_the_silhouette_on_the_far_side(model):
    v = model.vertices()
    pose = np.array([0, np.deg2rad(50), 0, 225, 225, 0, 1.2e-3])
    proj = project(v, pose, (450, 450))
    marched = marched_landmarks(model, proj, pose)
    fixed = proj[model.landmarks, :2]
    # +yaw turns model +x towards the camera: the image-left jaw (0-7) is on the far side
    assert np.all(marched[:8, 0] <= fixed[:8, 0] + 1e-9)
    assert np.any(marched[:8, 0] < fixed[:8, 0] - 1.0)
    np.testing.assert_array_equal(marched[8:], fixed[8:])


def test_shading_matches_lambertian_formula():
    n = np.array([[0, 0, 1.0], [1.0, 0, 0], [0, -1.0, 0]])
    sh = np.zeros((9, 3))
    sh[0] = 0.5
    sh[2] = 0.4  # light from the camera direction (+z)
    out = shade(np.full((3, 3), 100.0), n, sh)
    np.testing.assert_allclose(out[:, 0], [100 * 0.9, 100 * 0.5, 100 * 0.5 - 0], atol=1e-4)
    assert sh_basis(n).shape == (3, 9)


def test_untextured_model_rejected():
    m = random_model(100, 3, 2, seed=0)
    with pytest.raises(ValueError, match="texture"):
        synthesize(m, np.random.default_rng(0))


def test_jpeg_round_trip_keeps_labels_valid(model, tmp_path):
    s = synthesize(model, np.random.default_rng(9), image_size=128)
    write_image(tmp_path / "a.jpg", s.image)
    assert read_image(tmp_path / "a.jpg").shape == (128, 128, 3)
    fields = labels_to_mat(s.labels["Pose_Para"], s.labels["Shape_Para"], s.labels["Exp_Para"],
                           pt2d=s.landmarks)
    np.testing.assert_allclose(fields["pt2d"], s.labels["pt2d"])


def test_any_textured_model_works(tmp_path):
    m = random_model(900, 6, 3, seed=1, n_tex=4)
    s = synthesize(m, np.random.default_rng(2), image_size=200)
    write_labels(tmp_path / "r.mat", s.labels)
    lab = read_labels(tmp_path / "r.mat")
    pts = project(m.vertices(lab.shape_para, lab.exp_para)[m.landmarks], lab.pose_para, (200, 200))[:, :2]
    np.testing.assert_allclose(pts, lab.pt2d, atol=1e-4)
    assert s.mask.any()
