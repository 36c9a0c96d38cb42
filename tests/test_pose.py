"""300W-LP pose algebra: conventions, round trips, projection to the canonical frame."""

import numpy as np
import pytest

from face3d_data.w300lp import pose


def rx(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def ry(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rz(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def random_angles(rng, n=50):
    return np.stack([rng.uniform(-1.5, 1.5, n), rng.uniform(-1.55, 1.55, n), rng.uniform(-3.1, 3.1, n)], 1)


def test_300wlp_matrix_is_transposed_elementary_product():
    p, y, r = 0.3, -0.7, 0.2
    expected = (rz(r) @ ry(y) @ rx(p)).T
    np.testing.assert_allclose(pose.angles_to_matrix(p, y, r), expected, atol=1e-12)
    np.testing.assert_allclose(pose.angles_to_matrix(np.rad2deg(p), np.rad2deg(y), np.rad2deg(r), "face3d"),
                               expected.T, atol=1e-12)
    np.testing.assert_allclose(pose.angles_to_matrix(p, y, r, "deep3d"), expected.T, atol=1e-12)


@pytest.mark.parametrize("convention", pose.CONVENTIONS)
def test_angles_round_trip_every_convention(convention):
    rng = np.random.default_rng(0)
    ang = random_angles(rng)
    if convention == "face3d":
        ang = np.rad2deg(ang)
    R = pose.angles_to_matrix(ang[:, 0], ang[:, 1], ang[:, 2], convention)
    assert R.shape == (50, 3, 3)
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    back = np.stack(pose.matrix_to_angles(R, convention), 1)
    np.testing.assert_allclose(back, ang, atol=1e-9)
    for i in range(3):  # scalar path too
        np.testing.assert_allclose(pose.matrix_to_angles(R[i], convention), ang[i], atol=1e-9)


@pytest.mark.parametrize("src", pose.CONVENTIONS)
@pytest.mark.parametrize("dst", pose.CONVENTIONS)
def test_convert_angles_preserves_the_applied_rotation(src, dst):
    rng = np.random.default_rng(1)
    p, y, r = random_angles(rng, 1)[0] * (57.29577951308232 if src == "face3d" else 1)
    q = pose.convert_angles(p, y, r, src, dst)
    np.testing.assert_allclose(pose.angles_to_matrix(*q, dst), pose.angles_to_matrix(p, y, r, src), atol=1e-10)
    np.testing.assert_allclose(pose.convert_angles(*q, dst, src), (p, y, r), atol=1e-8)


def test_face3d_of_transposed_300wlp_matrix_returns_stored_angles():
    # docs/formats.md#rotation-conventions: face3d matrix2angle applied to R_3ddfaᵀ returns (pitch, yaw, roll)
    R = pose.angles_to_matrix(0.1, 0.5, -0.2, "300wlp")
    np.testing.assert_allclose(np.deg2rad(pose.matrix_to_angles(R.T, "face3d")), (0.1, 0.5, -0.2), atol=1e-12)


def test_gimbal_lock_reconstructs_matrix():
    for yaw in (np.pi / 2, -np.pi / 2):
        R = pose.angles_to_matrix(0.4, yaw, 0.1)
        np.testing.assert_allclose(pose.angles_to_matrix(*pose.matrix_to_angles(R)), R, atol=1e-7)


def test_orthonormalize_recovers_rotation():
    rng = np.random.default_rng(2)
    R = pose.angles_to_matrix(0.2, 0.9, -0.4)
    noisy = R + rng.normal(0, 1e-3, (3, 3))
    Q = pose.orthonormalize(noisy)
    np.testing.assert_allclose(Q @ Q.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(Q) == pytest.approx(1.0)
    assert np.abs(Q - R).max() < 3e-3
    np.testing.assert_allclose(pose.orthonormalize(2.5 * R), R, atol=1e-12)
    reflect = R @ np.diag([1, 1, -1])
    assert np.linalg.det(pose.orthonormalize(reflect)) == pytest.approx(1.0)


def test_project_matches_matlab_formula_and_canonical_conversion():
    rng = np.random.default_rng(3)
    S = rng.normal(0, 5e4, (20, 3))
    pp = np.array([0.1, -0.4, 0.05, 230.0, 210.0, 12.0, 1.1e-3], np.float32).reshape(1, 7)
    R = (rz(0.05) @ ry(-0.4) @ rx(0.1)).T
    f, t = float(pp[0, 6]), pp[0, 3:6].astype(float)
    matlab = f * S @ R.T + t
    out = pose.project(S, pp, (450, 450))
    np.testing.assert_allclose(out[:, 0], matlab[:, 0] - 1, atol=1e-9)
    np.testing.assert_allclose(out[:, 1], 450 - matlab[:, 1], atol=1e-9)
    np.testing.assert_allclose(out[:, 2], matlab[:, 2], atol=1e-9)
    # a point nearer the viewer (larger model z, frontal pose) gets larger projected z
    front = pose.project(np.array([[0, 0, 1e4], [0, 0, 0]]), [0, 0, 0, 0, 0, 0, 1e-3], (10, 10))
    assert front[0, 2] > front[1, 2]
    # model y up -> image y down
    up = pose.project(np.array([[0, 1e4, 0], [0, 0, 0]]), [0, 0, 0, 0, 0, 0, 1e-3], (10, 10))
    assert up[0, 1] < up[1, 1]
    batch = pose.project(np.stack([S, S]), np.stack([pp[0], pp[0]]), (450, 450))
    np.testing.assert_allclose(batch[1], out)
    np.testing.assert_allclose(pose.unproject_xy(out, (450, 450))[:, :2], matlab[:, :2], atol=1e-9)


def test_pose_para_round_trip_through_srt():
    pp = np.array([0.3, -1.2, 0.4, 200.0, 190.0, 5.0, 9e-4])
    f, R, t = pose.pose_para_to_srt(pp)
    np.testing.assert_allclose(pose.srt_to_pose_para(f, R, t), pp, atol=1e-12)


@pytest.mark.parametrize("bad, msg", [(np.zeros(6), "7 values"), ([0, 0, 0, 0, 0, 0, np.nan], "NaN"),
                                      ([0, 0, 0, 0, 0, 0, -1.0], "positive")])
def test_bad_pose_para_rejected(bad, msg):
    with pytest.raises(ValueError, match=msg):
        pose.project(np.zeros((3, 3)), bad, (10, 10))


def test_bad_rotation_rejected():
    with pytest.raises(ValueError, match="R"):
        pose.matrix_to_angles(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="convention"):
        pose.angles_to_matrix(0, 0, 0, "opencv")
