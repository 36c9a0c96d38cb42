"""The per-input sharing of the rotation (LabelRotation, PtsRotation, ImageRotation and the
rotate_300wlp stage that uses them) gives the bits of the straightforward per-angle computation.

The reference below is the per-angle implementation the shared one replaced (each angle: the
pose matrix rebuilt, ``matrix_to_angles``, the points converted to and from the canonical frame
through ``rotation.apply``; images warped in RGB and written with ``encode_image``).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import run_named

from face3d_data.augment import in_plane_rotation, rotate_image, rotate_label_fields, rotate_pose, rotate_pts_fields
from face3d_data.augment.rotate import ImageRotation, LabelRotation, PtsRotation
from face3d_data.io import encode_image, encode_mat, read_image, read_mat, write_image, write_mat
from face3d_data.w300lp import angles_to_matrix, matrix_to_angles, points_to_canonical, points_to_stored
from face3d_data.w300lp.labels import roi_to_canonical

ANGLES = [15, 30, 45, 60, -15, -30, -45, -60, 0, 7.5, 90, -90, 135, 180, -170, 1e-9]


# ------------------------------------------------------------------ the per-angle reference
def _ref_pose(pose_para, rotation):
    pose = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    flip = np.diag([1.0, -1.0])
    rz = np.eye(3)
    rz[:2, :2] = flip @ rotation.linear @ flip
    r_new = rz @ np.asarray(angles_to_matrix(*pose[:3]), dtype=np.float64)
    offset = np.array([pose[3] - 1.0, rotation.in_hw[0] - pose[4]])
    offset_new = rotation.linear @ offset + rotation.matrix[:, 2]
    out = pose.copy()
    out[:3] = matrix_to_angles(r_new)
    out[3] = offset_new[0] + 1.0
    out[4] = rotation.out_hw[0] - offset_new[1]
    return out


def _ref_one_based(points_xy, rotation):
    return points_to_stored(rotation.apply(points_to_canonical(points_xy)))


def _ref_rows(array, rotation):
    a = np.asarray(array)
    out = a.astype(np.float64, copy=True)
    out[:2] = _ref_one_based(out[:2].T, rotation).T
    return out.astype(a.dtype) if a.dtype.kind == "f" else out


def _ref_roi(roi, rotation):
    r = np.asarray(roi)
    x1, y1, x2, y2 = roi_to_canonical(r)
    corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])
    turned = points_to_stored(rotation.apply(corners))
    lo, hi = np.floor(turned.min(axis=0)), np.ceil(turned.max(axis=0))
    box = np.array([lo[0], lo[1], hi[0], hi[1]])
    if r.dtype.kind in "iu":
        info = np.iinfo(r.dtype)
        box = np.clip(box, info.min, info.max)
    return box.astype(r.dtype).reshape(r.shape)


def _ref_labels(fields, rotation):
    out = {name: np.array(value, copy=True) for name, value in fields.items()}
    pose = np.asarray(fields["Pose_Para"])
    out["Pose_Para"] = _ref_pose(pose, rotation).astype(
        pose.dtype if pose.dtype.kind == "f" else np.float64).reshape(pose.shape)
    for name in ("pt2d", "pt3d_68"):
        if name in fields:
            out[name] = _ref_rows(fields[name], rotation)
    if "roi" in fields:
        out["roi"] = _ref_roi(fields["roi"], rotation)
    return out


def _ref_pts(fields, rotation):
    out = {name: np.array(value, copy=True) for name, value in fields.items()}
    for name in ("pts_2d", "pts_3d"):
        if name in fields:
            a = np.asarray(fields[name])
            out[name] = _ref_one_based(a, rotation).astype(a.dtype if a.dtype.kind == "f" else np.float64)
    return out


# ------------------------------------------------------------------ helpers
def _same_bits(a: dict, b: dict):
    assert list(a) == list(b)
    for name in a:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert x.tobytes(order="F") == y.tobytes(order="F"), name


def _labels(rng, h, w, kind):
    """Label dicts as 300W-LP stores them (Fortran-ordered arrays as loadmat returns), with variants."""
    pose = np.array([[rng.uniform(-0.6, 0.6), rng.uniform(-1.4, 1.4), rng.uniform(-3, 3),
                      rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(-50, 50),
                      rng.uniform(5e-4, 2e-3)]])
    if kind == 1:
        pose[0, 1] = np.pi / 2  # gimbal lock
    pt2d = np.asfortranarray(rng.uniform(-20, max(h, w) + 20, size=(2, 68)))
    pt2d[:, rng.integers(0, 68, 3)] = -1.0  # missing points
    pt2d[0, 7] = -1.0  # only x is -1: not missing
    fields = {
        "Pose_Para": pose.astype(np.float32 if kind != 2 else np.float64),
        "Shape_Para": rng.normal(size=(199, 1)) * 1e5,
        "Exp_Para": rng.normal(size=(29, 1)).astype(np.float32),
        "pt2d": pt2d if kind != 3 else np.round(pt2d).astype(np.int16),
        "pt3d_68": np.asfortranarray(rng.uniform(0, 450, size=(3, 68)).astype(np.float32)),
        "roi": np.array([[-30, 40, 380, 460]], dtype=np.int16 if kind != 2 else np.float64),
        "Illum_Para": rng.normal(size=(1, 10)),
    }
    if kind == 1:  # a box near the corner: rotated corners leave the uint8 range (clipped)
        fields["roi"] = np.array([[5, 150, 120, 250]], dtype=np.uint8)
    if kind == 3:
        fields["roi"] = np.array([[-30.5, 40.25, 380.0, 460.75]], dtype=np.float32)
    if kind == 4:
        del fields["roi"], fields["pt3d_68"]
    return fields


# ------------------------------------------------------------------ tests
@pytest.mark.parametrize("expand", [False, True])
def test_label_and_pts_rotation_match_the_per_angle_reference_bit_for_bit(expand):
    rng = np.random.default_rng(11)
    for trial in range(15):
        h, w = [(450, 450), (380, 520), (97, 64)][trial % 3]
        fields = _labels(rng, h, w, trial % 5)
        pts = {"pts_2d": np.asfortranarray(rng.uniform(0, 450, (68, 2))),
               "pts_3d": rng.uniform(0, 450, (68, 2)).astype(np.float32)}
        shared, shared_pts = LabelRotation(fields), PtsRotation(pts)
        for theta in ANGLES:
            rot = in_plane_rotation(theta, (h, w), expand=expand)
            want = _ref_labels(fields, rot)
            _same_bits(shared.rotate(rot), want)
            _same_bits(shared.rotate(rot, copy=False), want)
            _same_bits(rotate_label_fields(fields, rot), want)
            assert encode_mat(shared.rotate(rot, copy=False)) == encode_mat(want)
            np.testing.assert_array_equal(rotate_pose(fields["Pose_Para"], rot),
                                          _ref_pose(fields["Pose_Para"], rot))
            _same_bits(shared_pts.rotate(rot, copy=False), _ref_pts(pts, rot))
            _same_bits(rotate_pts_fields(pts, rot), _ref_pts(pts, rot))


def test_shared_rotation_leaves_the_input_alone_and_copies_on_request():
    rng = np.random.default_rng(12)
    fields = _labels(rng, 450, 450, 0)
    before = {k: v.copy() for k, v in fields.items()}
    shared = LabelRotation(fields)
    rot = in_plane_rotation(30, (450, 450))
    copied, kept = shared.rotate(rot), shared.rotate(rot, copy=False)
    assert copied["Shape_Para"] is not fields["Shape_Para"]
    assert kept["Shape_Para"] is fields["Shape_Para"]
    kept["pt2d"][:] = 0  # a rotated field is always a new array
    _same_bits(fields, before)


def test_one_matrix_angles_equal_the_batched_path():
    """matrix_to_angles of one matrix (the branch that applies, as rotate_pose uses it) gives the
    bits of the batched np.where path, at and near gimbal lock too."""
    rng = np.random.default_rng(13)
    for i in range(3000):
        angles = rng.uniform([-np.pi, -np.pi / 2, -np.pi], [np.pi, np.pi / 2, np.pi])
        if i % 10 == 0:
            angles[1] = rng.choice([np.pi / 2, -np.pi / 2, np.pi / 2 - 1e-10])
        r = angles_to_matrix(*angles)
        if i % 3 == 0:
            r = np.diag([1.0, -1.0, 1.0]) @ r @ np.diag([1.0, -1.0, 1.0])
        got, want = matrix_to_angles(r), [float(a[0]) for a in matrix_to_angles(r[None])]
        assert np.array(got).tobytes() == np.array(want).tobytes(), (i, got, want)


@pytest.mark.parametrize("fill", [0, 128.0, (10, 200, 30), "reflect", "replicate"])
def test_image_rotation_gives_the_bytes_of_rotate_image_and_encode_image(fill):
    rng = np.random.default_rng(14)
    image = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    image[20:40, 30:60] = (250, 10, 120)
    shared = ImageRotation(image, fill=fill)
    for expand in (False, True, False):  # buffers of several sizes, reused
        for theta in (30, -45, 90, 7.5):
            rot = in_plane_rotation(theta, image.shape[:2], expand=expand)
            turned = rotate_image(image, rot, fill=fill)
            np.testing.assert_array_equal(shared.rotate(rot), turned)
            for quality in (95, 60):
                assert shared.jpeg(rot, quality) == encode_image(turned, ".jpg", quality)
    with pytest.raises(ValueError, match="image must have shape"):
        shared.jpeg(in_plane_rotation(10, (20, 20)))
    with pytest.raises(ValueError, match="uint8"):
        ImageRotation(image.astype(np.float32))


def test_rotate_stage_outputs_equal_the_per_angle_reference(tmp_path):
    """Every file of the stage (images, labels, _pts.mat) with a colour fill and an expanded
    canvas equals what the reference writes for the same angle."""
    rng = np.random.default_rng(15)
    root = tmp_path / "300W_LP"
    names = ["AFW/AFW_1_1_0", "HELEN/HELEN_2_1_3"]
    for i, name in enumerate(names):
        image = rng.integers(0, 255, (450, 450, 3), dtype=np.uint8)
        write_image(str(root / f"{name}.jpg"), image)
        fields = _labels(rng, 450, 450, i)
        del fields["Illum_Para"]
        write_mat(str(root / f"{name}.mat"), fields)
        if i == 0:
            subset, stem = name.split("/")
            write_mat(str(root / "landmarks" / subset / f"{stem}_pts.mat"),
                      {"pts_2d": rng.uniform(0, 450, (68, 2)), "pts_3d": rng.uniform(0, 450, (68, 2))})
    out = tmp_path / "out"
    angles = [30, -45, 7.5]
    summary = run_named("rotate_300wlp", out, data_root=str(root), angles=angles, fill="10,20,30",
                        expand=True, jpeg_quality=90)
    assert summary.failed == 0 and summary.processed == len(names)
    for name in names:
        image = read_image(str(root / f"{name}.jpg"))
        fields = read_mat(str(root / f"{name}.mat"))
        for theta in angles:
            rot = in_plane_rotation(theta, (450, 450), expand=True)
            stem = f"{name}_angle_{theta:g}"
            with open(out / f"{stem}.jpg", "rb") as f:
                assert f.read() == encode_image(rotate_image(image, rot, fill=(10.0, 20.0, 30.0)), ".jpg", 90)
            with open(out / f"{stem}.mat", "rb") as f:
                assert f.read() == encode_mat(_ref_labels(fields, rot))
    pts = read_mat(str(root / "landmarks/AFW/AFW_1_1_0_pts.mat"))
    for theta in angles:
        rot = in_plane_rotation(theta, (450, 450), expand=True)
        with open(out / f"landmarks/AFW/AFW_1_1_0_angle_{theta:g}_pts.mat", "rb") as f:
            assert f.read() == encode_mat(_ref_pts(pts, rot))
    assert not os.path.exists(out / "landmarks/HELEN")
