"""In-plane rotation of 300W-LP samples: image resampling and the analytic label update."""

from __future__ import annotations

import math

import numpy as np
import pytest

from face3d_data.augment import (
    angle_suffix,
    in_plane_rotation,
    rotate_image,
    rotate_label_fields,
    rotate_pts_fields,
    rotate_sample,
)
from face3d_data.w300lp import angles_to_matrix, matrix_to_angles, project

ANGLES = [15, 30, 45, 60, -15, -30, -45, -60, 7.5, 90, 135, 180, -170]


def _rz(theta_deg):
    """Standard CCW rotation about z in a y-up frame (independent of the module under test)."""
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _landmark_points(rng, n=68):
    """A head-sized point cloud in BFM-like units (model space, y up)."""
    pts = rng.normal(size=(n, 3)) * np.array([6e4, 7e4, 4e4])
    pts[:, 2] += 5e4
    return pts


def _labels(rng, h=450, w=450):
    pose = np.array([[rng.uniform(-0.5, 0.5), rng.uniform(-1.3, 1.3), rng.uniform(-0.6, 0.6),
                      rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(-50, 50),
                      rng.uniform(8e-4, 1.5e-3)]], dtype=np.float32)
    pt2d = rng.uniform(50, 400, size=(2, 68))
    pt2d[:, 5] = -1.0  # a missing point, AFLW2000 style
    return {
        "Pose_Para": pose,
        "Shape_Para": rng.normal(size=(199, 1)) * 1e5,
        "Exp_Para": rng.normal(size=(29, 1)).astype(np.float32),
        "Tex_Para": rng.normal(size=(199, 1)),
        "pt2d": pt2d,
        "pt3d_68": rng.uniform(50, 400, size=(3, 68)).astype(np.float32),
        "roi": np.array([[120, 80, 380, 340]], dtype=np.int16),
    }


@pytest.mark.parametrize("expand", [False, True])
def test_new_pose_reprojects_onto_rotated_projection(expand):
    rng = np.random.default_rng(0)
    worst = 0.0
    for trial in range(6):
        points = _landmark_points(rng)
        hw = (450, 450) if trial % 2 == 0 else (380, 520)
        labels = _labels(rng, *hw)
        before = project(points, labels["Pose_Para"], hw)
        for theta in ANGLES:
            rot = in_plane_rotation(theta, hw, expand=expand)
            new = rotate_label_fields(labels, rot)
            assert new["Pose_Para"].dtype == np.float32 and new["Pose_Para"].shape == (1, 7)
            after = project(points, new["Pose_Para"], rot.out_hw)
            expected = rot.apply(before[:, :2])
            worst = max(worst, float(np.abs(after[:, :2] - expected).max()))
            # z (larger = closer) does not change under a turn about the camera axis
            np.testing.assert_allclose(after[:, 2], before[:, 2], atol=1e-3)
    assert 0 < worst < 1e-4, f"worst reprojection error {worst} px"


def test_rotation_matrix_is_rz_times_r_and_roll_shifts_by_minus_theta():
    rng = np.random.default_rng(1)
    labels = _labels(rng)
    pose = labels["Pose_Para"].astype(np.float64).ravel()
    for theta in ANGLES:
        new = rotate_label_fields(labels, in_plane_rotation(theta, (450, 450)))
        p = new["Pose_Para"].astype(np.float64).ravel()
        expected = _rz(theta) @ angles_to_matrix(*pose[:3])
        np.testing.assert_allclose(angles_to_matrix(*p[:3]), expected, atol=1e-6)
        np.testing.assert_allclose(p[5:], pose[5:], rtol=1e-7)  # tz and f unchanged
    # frontal face: a pure roll change of -theta (wrapped)
    frontal = dict(labels, Pose_Para=np.array([[0, 0, 0.2, 225.5, 225.5, 0, 1e-3]], np.float32))
    for theta in (15, -45, 60):
        p = rotate_label_fields(frontal, in_plane_rotation(theta, (450, 450)))["Pose_Para"].ravel()
        assert abs(p[0]) < 1e-6 and abs(p[1]) < 1e-6
        assert math.isclose(p[2], 0.2 - math.radians(theta), abs_tol=1e-6)
        # t at the pivot (225.5, 225.5 in the 1-based y-up frame) stays put
        assert math.isclose(p[3], 225.5, abs_tol=1e-4) and math.isclose(p[4], 225.5, abs_tol=1e-4)


def test_angles_are_300wlp_convention():
    rng = np.random.default_rng(2)
    labels = _labels(rng)
    new = rotate_label_fields(labels, in_plane_rotation(30, (450, 450)))
    p = new["Pose_Para"].astype(np.float64).ravel()
    # matrix_to_angles is the inverse of angles_to_matrix in the 300W-LP convention
    np.testing.assert_allclose(matrix_to_angles(angles_to_matrix(*p[:3])), p[:3], atol=1e-6)
    assert -math.pi / 2 <= p[1] <= math.pi / 2


def _blob_centroid(image):
    gray = image.astype(np.float64).sum(axis=2)
    gray = np.where(gray > 0.3 * gray.max(), gray, 0.0)
    ys, xs = np.mgrid[:gray.shape[0], :gray.shape[1]]
    return np.array([(xs * gray).sum(), (ys * gray).sum()]) / gray.sum()


@pytest.mark.parametrize("expand", [False, True])
def test_image_turns_counter_clockwise_with_the_labels(expand):
    h, w = 301, 401
    cx, cy = (w - 1) / 2, (h - 1) / 2
    image = np.zeros((h, w, 3), np.uint8)
    spot = (int(cx) + 90, int(cy) + 20)
    image[spot[1] - 3:spot[1] + 4, spot[0] - 3:spot[0] + 4] = 255
    rot = in_plane_rotation(90, (h, w), expand=expand)
    out = rotate_image(image, rot)
    assert out.shape[:2] == rot.out_hw
    got = _blob_centroid(out)
    # +90 degrees CCW as displayed: right of the centre goes up, below the centre goes right
    ocx, ocy = (rot.out_hw[1] - 1) / 2, (rot.out_hw[0] - 1) / 2
    np.testing.assert_allclose(got, [ocx + 20, ocy - 90], atol=0.05)
    for theta in (33, -61):
        rot = in_plane_rotation(theta, (h, w), expand=expand)
        np.testing.assert_allclose(_blob_centroid(rotate_image(image, rot)),
                                   rot.apply(np.array(spot, float)), atol=0.1)


def test_canvas_sizes_and_fill():
    assert in_plane_rotation(30, (450, 450)).out_hw == (450, 450)
    assert in_plane_rotation(90, (300, 450), expand=True).out_hw == (450, 300)
    assert in_plane_rotation(45, (450, 450), expand=True).out_hw == (637, 637)
    image = np.full((50, 50, 3), 100, np.uint8)
    rot = in_plane_rotation(45, (50, 50))
    assert tuple(rotate_image(image, rot)[0, 0]) == (0, 0, 0)
    assert tuple(rotate_image(image, rot, fill=(10, 20, 30))[0, 0]) == (10, 20, 30)
    assert tuple(rotate_image(image, rot, fill="reflect")[0, 0]) == (100, 100, 100)
    with pytest.raises(ValueError, match="fill"):
        rotate_image(image, rot, fill="mirror")


def test_point_fields_rotate_in_their_own_frame():
    rng = np.random.default_rng(3)
    labels = _labels(rng)
    theta = 30
    new = rotate_label_fields(labels, in_plane_rotation(theta, (450, 450)))
    # independent: rotate 1-based y-down points about the 1-based centre (225.5, 225.5)
    c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
    d = labels["pt2d"] - 225.5
    expected = np.stack([c * d[0] + s * d[1], -s * d[0] + c * d[1]]) + 225.5
    keep = np.ones(68, bool)
    keep[5] = False
    np.testing.assert_allclose(new["pt2d"][:, keep], expected[:, keep], atol=1e-9)
    assert np.all(new["pt2d"][:, 5] == -1.0)  # missing stays missing
    assert new["pt3d_68"].dtype == np.float32
    np.testing.assert_array_equal(new["pt3d_68"][2], labels["pt3d_68"][2])
    # roi: the square box around the rotated square
    roi = new["roi"]
    assert roi.dtype == np.int16 and roi.shape == (1, 4)
    x1, y1, x2, y2 = roi.ravel()
    assert x2 - x1 == y2 - y1
    half = 130 * (c + s)
    assert abs((x2 - x1) - 2 * half) <= 2
    # every other field is kept exactly
    for name in ("Shape_Para", "Exp_Para", "Tex_Para"):
        np.testing.assert_array_equal(new[name], labels[name])
        assert new[name].dtype == labels[name].dtype


def test_pts_mat_and_sample():
    rng = np.random.default_rng(4)
    labels = _labels(rng)
    pts = {"pts_2d": rng.uniform(50, 400, (68, 2)), "pts_3d": rng.uniform(50, 400, (68, 2))}
    image = rng.integers(0, 255, (450, 450, 3), dtype=np.uint8)
    sample = rotate_sample(image, labels, -45, pts=pts)
    assert sample.image.shape == image.shape and sample.image.dtype == np.uint8
    np.testing.assert_allclose(sample.pts["pts_2d"], rotate_pts_fields(pts, sample.rotation)["pts_2d"])
    # rotating back returns the original points
    back = rotate_pts_fields(sample.pts, in_plane_rotation(45, (450, 450)))
    np.testing.assert_allclose(back["pts_3d"], pts["pts_3d"], atol=1e-9)


def test_bad_input_is_named():
    rng = np.random.default_rng(5)
    labels = _labels(rng)
    with pytest.raises(ValueError, match="image"):
        rotate_image(np.zeros((10, 10, 3), np.uint8), in_plane_rotation(10, (20, 20)))
    with pytest.raises(ValueError, match="Pose_Para"):
        rotate_label_fields({"pt2d": labels["pt2d"]}, in_plane_rotation(10, (450, 450)))
    bad = dict(labels, Pose_Para=np.full((1, 7), np.nan, np.float32))
    with pytest.raises(ValueError, match="pose_para"):
        rotate_label_fields(bad, in_plane_rotation(10, (450, 450)))
    with pytest.raises(ValueError, match="theta_deg"):
        in_plane_rotation(float("nan"), (450, 450))


def test_angle_suffix():
    assert angle_suffix(15) == "_angle_15"
    assert angle_suffix(-30.0) == "_angle_-30"
    assert angle_suffix(7.5) == "_angle_7.5"
