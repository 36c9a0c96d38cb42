"""300W-LP reader/writer: pairing, validation, the view-0 pt2d trap, exact layout round trips."""

import numpy as np
import pytest
import scipy.io

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import write_image
from face3d_data.morphable.testing import random_model
from face3d_data.w300lp import (
    FIELD_SPECS,
    FIELDS,
    check_data_root,
    dataset_inputs,
    find_samples,
    labels_to_mat,
    landmarks_from_params,
    load_sample,
    read_labels,
    read_pts_mat,
    roi_of_points,
    view_index,
    write_labels,
    write_pts_mat,
)
from face3d_data.w300lp.pose import project


def fake_300wlp_mat(path, k_shape=199, k_exp=29, pose=None, pt2d=None):
    """A label file with the exact shapes/dtypes of a real 300W-LP sample (docs/formats.md#300w-lp-label-fields)."""
    rng = np.random.default_rng(0)
    pose = np.array([[0.1, 0.47, -0.05, 220.0, 230.0, 10.0, 1.1e-3]], np.float32) if pose is None else pose
    scipy.io.savemat(path, {
        "Pose_Para": pose,
        "Shape_Para": rng.normal(0, 1e5, (k_shape, 1)),
        "Exp_Para": rng.normal(0, 1, (k_exp, 1)),
        "Tex_Para": rng.normal(0, 1, (199, 1)),
        "Color_Para": np.array([[1, 1, 1, 0, 0, 0, 1]], np.float32),
        "Illum_Para": np.zeros((1, 10)),
        "pt2d": rng.uniform(100, 350, (2, 68)) if pt2d is None else pt2d,
        "roi": np.array([[162, 52, 1182, 1072]], np.int16),
    })


def make_tree(root):
    for sub in ("AFW", "AFW_Flip", "HELEN"):
        d = root / sub
        d.mkdir(parents=True)
        for k in (0, 1):
            name = f"{sub.split('_')[0]}_134212_1_{k}"
            write_image(d / f"{name}.jpg", np.zeros((8, 8, 3), np.uint8))
            fake_300wlp_mat(d / f"{name}.mat")
    (root / "landmarks" / "AFW").mkdir(parents=True)
    write_pts_mat(root / "landmarks" / "AFW" / "AFW_134212_1_0_pts.mat",
                  np.zeros((68, 2)), np.ones((68, 2)))
    write_image(root / "AFW" / "lonely.jpg", np.zeros((8, 8, 3), np.uint8))  # no label: skipped
    (root / "Code").mkdir()
    (root / "Code" / "x.mat").write_bytes(b"")  # no image: skipped


def test_find_samples_pairs_images_and_labels(tmp_path):
    make_tree(tmp_path)
    samples = find_samples(tmp_path)
    keys = [s.key for s in samples]
    assert keys == sorted(keys) and len(keys) == 6
    assert "AFW_Flip/AFW_134212_1_1" in keys and "AFW/lonely" not in keys
    s0 = next(s for s in samples if s.key == "AFW/AFW_134212_1_0")
    assert s0.pts_path == tmp_path / "landmarks" / "AFW" / "AFW_134212_1_0_pts.mat"
    assert s0.image_path.suffix == ".jpg" and s0.mat_path.suffix == ".mat"
    assert next(s for s in samples if s.key == "AFW/AFW_134212_1_1").pts_path is None


def test_find_samples_in_project_layout(tmp_path):
    write_image(tmp_path / "synth_000001.jpg", np.zeros((8, 8, 3), np.uint8))
    fake_300wlp_mat(tmp_path / "synth_000001.mat")
    write_pts_mat(tmp_path / "landmarks" / "synth_000001_pts.mat", np.zeros((68, 2)), np.zeros((68, 2)))
    (s,) = find_samples(tmp_path)
    assert s.key == "synth_000001" and s.pts_path == tmp_path / "landmarks" / "synth_000001_pts.mat"
    with pytest.raises(InputError, match="not a folder"):
        find_samples(tmp_path / "missing")


def test_read_labels_canonical_frame_and_view_trap(tmp_path):
    pt2d = np.stack([np.arange(1, 69, dtype=float), np.arange(101, 169, dtype=float)])
    fake_300wlp_mat(tmp_path / "AFW_1_1_0.mat", pt2d=pt2d)
    fake_300wlp_mat(tmp_path / "AFW_1_1_3.mat", pt2d=pt2d)
    lab0 = read_labels(tmp_path / "AFW_1_1_0.mat")
    np.testing.assert_allclose(lab0.pt2d[:, 0], np.arange(68))        # 1-based -> 0-based
    np.testing.assert_allclose(lab0.pt2d[:, 1], np.arange(100, 168))  # y down stays down
    assert lab0.pose_para.shape == (7,) and lab0.shape_para.shape == (199,) and lab0.exp_para.shape == (29,)
    assert lab0.pt2d_valid and not read_labels(tmp_path / "AFW_1_1_3.mat").pt2d_valid
    assert view_index("HELEN_232194_1_12") == 12 and view_index("synth_000001") is None
    assert lab0.raw["roi"].dtype == np.int16


@pytest.mark.parametrize("field, value, msg", [
    ("Pose_Para", np.zeros((1, 6), np.float32), "Pose_Para"),
    ("Pose_Para", np.array([[0, 0, 0, 0, 0, 0, np.nan]], np.float32), "NaN"),
    ("Pose_Para", np.array([[0, 0, 0, 0, 0, 0, -1]], np.float32), "positive"),
    ("Shape_Para", np.full((199, 1), np.inf), "Shape_Para"),
])
def test_read_labels_rejects_bad_fields(tmp_path, field, value, msg):
    path = tmp_path / "bad.mat"
    fake_300wlp_mat(path)
    data = scipy.io.loadmat(path)
    data[field] = value
    scipy.io.savemat(path, {k: v for k, v in data.items() if not k.startswith("__")})
    with pytest.raises(InputError, match=msg) as info:
        read_labels(path)
    assert "bad.mat" in str(info.value)


def test_read_labels_missing_field_and_corrupt_file(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"Pose_Para": np.ones((1, 7))})
    with pytest.raises(InputError, match="Shape_Para"):
        read_labels(tmp_path / "a.mat")
    (tmp_path / "b.mat").write_bytes(b"MATLAB garbage")
    with pytest.raises(InputError, match="b.mat"):
        read_labels(tmp_path / "b.mat")


def test_labels_to_mat_exact_layout_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    pose = [0.2, -0.3, 0.1, 200.0, 210.0, 3.0, 1.2e-3]
    sp, ep, tp = rng.normal(size=199), rng.normal(size=29), rng.normal(size=199)
    pts = rng.uniform(0, 449, (68, 2))
    pt3 = np.c_[pts, rng.normal(size=68)]
    fields = labels_to_mat(pose, sp, ep, tex_para=tp, pt2d=pts, pt3d_68=pt3, roi=[1, 2, 300, 301])
    shapes = {k: (v.shape, v.dtype) for k, v in fields.items()}
    assert shapes["Pose_Para"] == ((1, 7), np.float32) and shapes["Shape_Para"] == ((199, 1), np.float64)
    assert shapes["Exp_Para"] == ((29, 1), np.float64) and shapes["pt2d"] == ((2, 68), np.float64)
    assert shapes["pt3d_68"] == ((3, 68), np.float32) and shapes["roi"] == ((1, 4), np.int16)
    assert shapes["Color_Para"] == ((1, 7), np.float32) and shapes["Illum_Para"] == ((1, 10), np.float64)
    write_labels(tmp_path / "x.mat", fields)
    raw = scipy.io.loadmat(tmp_path / "x.mat")
    np.testing.assert_allclose(raw["pt2d"], (pts + 1).T)  # independent: 1-based y down
    back = read_labels(tmp_path / "x.mat")
    np.testing.assert_allclose(back.pt2d, pts, atol=1e-12)
    np.testing.assert_allclose(back.pose_para, np.float32(pose), atol=0)
    np.testing.assert_allclose(back.shape_para, sp)
    np.testing.assert_allclose(back.pt3d_68, pt3, atol=1e-4)
    # deterministic bytes
    write_labels(tmp_path / "y.mat", fields)
    assert (tmp_path / "x.mat").read_bytes() == (tmp_path / "y.mat").read_bytes()


def test_pts_mat_round_trip(tmp_path):
    a, b = np.random.default_rng(2).uniform(0, 400, (2, 68, 2))
    write_pts_mat(tmp_path / "p_pts.mat", a, b)
    raw = scipy.io.loadmat(tmp_path / "p_pts.mat")
    np.testing.assert_allclose(raw["pts_2d"], a + 1)
    a2, b2 = read_pts_mat(tmp_path / "p_pts.mat")
    np.testing.assert_allclose(a2, a)
    np.testing.assert_allclose(b2, b)


def test_landmarks_from_params_for_any_view(tmp_path):
    model = random_model(300, 8, 4, seed=2)
    sp = np.random.default_rng(3).normal(size=8) * model.shape_std
    pose = np.array([0.1, 0.6, -0.1, 220, 230, 0, 1.1e-3])
    true = project(model.vertices(sp)[model.landmarks], pose, (450, 450))
    write_labels(tmp_path / "AFW_9_1_4.mat", labels_to_mat(pose, sp, np.zeros(4), pt2d=np.zeros((68, 2))))
    lab = read_labels(tmp_path / "AFW_9_1_4.mat")
    assert not lab.pt2d_valid
    np.testing.assert_allclose(landmarks_from_params(model, lab, (450, 450)), true, atol=1e-2)
    with pytest.raises(ValueError, match="coefficients"):
        landmarks_from_params(random_model(300, 4, 4, seed=2), lab, (450, 450))
    with pytest.raises(InputError, match="AFW_9_1_4.mat.*coefficients"):
        landmarks_from_params(random_model(300, 4, 4, seed=2), lab, (450, 450), path="AFW_9_1_4.mat")


def test_roi_is_stored_one_based_like_pt2d(tmp_path):
    """roi is written in pt2d's frame (1-based, y down) and read back canonical."""
    pts = np.random.default_rng(4).uniform(50, 300, (68, 2))
    fields = labels_to_mat(np.r_[0, 0, 0, 0, 0, 0, 1.0], np.zeros(3), np.zeros(2), pt2d=pts,
                           roi=[10.2, 20.0, 299.6, 309.4])
    np.testing.assert_array_equal(fields["roi"], [[11, 21, 301, 310]])
    write_labels(tmp_path / "r.mat", fields)
    lab = read_labels(tmp_path / "r.mat")
    np.testing.assert_array_equal(lab.roi, [10, 20, 300, 309])
    # roi_of_points: the square box centred on the points' box, longer side
    box = roi_of_points(pts)
    lo, hi = pts.min(0), pts.max(0)
    side = (hi - lo).max()
    np.testing.assert_allclose(box[2:] - box[:2], [side, side])
    np.testing.assert_allclose((box[2:] + box[:2]) / 2, (lo + hi) / 2)
    # a real 300W-LP roi (1-based) reads 1 px lower, canonical
    fake_300wlp_mat(tmp_path / "AFW_1_1_0.mat")
    np.testing.assert_array_equal(read_labels(tmp_path / "AFW_1_1_0.mat").roi, [161, 51, 1181, 1071])


def test_schema_states_what_labels_to_mat_writes():
    fields = labels_to_mat(np.r_[0, 0, 0, 0, 0, 0, 1.0], np.zeros(5), np.zeros(3), tex_para=np.zeros(4),
                           pt2d=np.zeros((68, 2)), pt3d_68=np.zeros((68, 3)), roi=[0, 0, 9, 9])
    assert list(fields) == [f.name for f in FIELDS]       # every field written is in the schema, in order
    for name, value in fields.items():
        spec = FIELD_SPECS[name]
        assert spec.dtype.split()[0] == value.dtype.name, name
        stored = spec.stored.split(";")[0].strip("() ").split(", ")
        for want, got in zip(stored, value.shape):
            assert want == "K" or int(want) == got, (name, value.shape)
        assert spec.frame and spec.meaning
    assert {f.name for f in FIELDS if f.required} == {"Pose_Para", "Shape_Para", "Exp_Para"}


def test_find_samples_excludes_an_output_folder_inside_the_root(tmp_path):
    make_tree(tmp_path)
    out = tmp_path / "AFW" / "rotated"
    out.mkdir()
    write_image(out / "AFW_134212_1_0_angle_30.jpg", np.zeros((8, 8, 3), np.uint8))
    fake_300wlp_mat(out / "AFW_134212_1_0_angle_30.mat")
    assert any("rotated" in s.key for s in find_samples(tmp_path))
    keys = [k for k, _ in dataset_inputs(tmp_path, exclude=[out])]
    assert keys == [s.key for s in find_samples(tmp_path)
                    if "rotated" not in s.key] and len(keys) == 6
    assert find_samples(tmp_path, exclude=[tmp_path]) == []


def test_check_data_root(tmp_path):
    assert check_data_root(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="--data-root is required"):
        check_data_root(None)
    with pytest.raises(ConfigError, match="data_root: .*not a folder"):
        check_data_root(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="--img-folder is required"):
        check_data_root("", option="img_folder")


def test_load_sample_projects_the_face(tmp_path):
    model = random_model(300, 8, 4, seed=2)
    sp = np.random.default_rng(3).normal(size=8) * model.shape_std
    pose = np.array([0.1, 0.6, -0.1, 30, 25, 0, 0.05])
    write_image(tmp_path / "a.png", np.full((40, 50, 3), 7, np.uint8))
    write_labels(tmp_path / "a.mat", labels_to_mat(pose, sp, np.zeros(4)))
    sample = load_sample(tmp_path / "a.png", tmp_path / "a.mat", model)
    assert sample.image_hw == (40, 50) and sample.image.shape == (40, 50, 3)
    expected = project(model.vertices(np.float64(sp)), np.float32(pose), (40, 50))
    np.testing.assert_allclose(sample.projected, expected, rtol=1e-5, atol=1e-3)  # float32 vertices
    assert load_sample(tmp_path / "a.png", tmp_path / "a.mat").projected is None
    with pytest.raises(InputError, match="a.mat.*coefficients"):
        load_sample(tmp_path / "a.png", tmp_path / "a.mat", random_model(300, 4, 4, seed=2))
