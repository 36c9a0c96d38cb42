"""Stage profile_300wlp end to end on a synthetic 300W-LP folder: layout, labels per view,
quality record, flips, failures, resume/determinism, and that other stages run on its output."""

from __future__ import annotations

import csv
import filecmp
import os

import numpy as np
import pytest

from face3d_data.errors import ConfigError
from face3d_data.io import read_image, read_mat, write_image, write_mat
from face3d_data.morphable import builtin_model
from face3d_data.w300lp import find_samples, project, read_labels, read_pts_mat
from face3d_data.w300lp.synth import marched_landmarks
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class

SIZE = 128


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    cfg = build_config("synth_300wlp", explicit={"count": 3, "image_size": SIZE, "yaw_range_deg": 30.0,
                                                 "face_width_px": [280.0, 300.0]})
    s = run_stage(stage_class("synth_300wlp"), RunOptions(out=str(root), jobs=1, backend="threading",
                                                          quiet=True), cfg=cfg)
    assert s.failed == 0
    return root


def _run(data_root, out, jobs=1, backend="threading", **options):
    explicit = {"data_root": str(data_root), "yaw_step": 30.0, "max_yaw": 90.0, **options}
    cfg = build_config("profile_300wlp", explicit=explicit)
    return run_stage(stage_class("profile_300wlp"), RunOptions(out=str(out), jobs=jobs, backend=backend,
                                                               quiet=True), cfg=cfg)


def _quality(out):
    with open(os.path.join(out, "quality.csv"), newline="") as f:
        return list(csv.DictReader(f))


def test_stage_writes_views_with_labels_for_each_pose(synth_root, tmp_path):
    summary = _run(synth_root, tmp_path / "out", flip=True)
    assert summary.failed == 0 and summary.processed == 3
    out = tmp_path / "out"
    model = builtin_model()
    sources = {s.key: s for s in find_samples(synth_root)}
    views = find_samples(out)
    keys = {v.key for v in views}
    rows = _quality(out)
    for key, sample in sources.items():
        src = read_labels(sample.mat_path)
        yaw0 = np.degrees(src.pose_para[1])
        n = int(np.floor((90 - abs(yaw0)) / 30 + 1e-9))
        expect = {f"{key}_{k}" for k in range(n + 1)}
        assert expect <= keys and {f"Flip/{k}" for k in expect} <= keys
        assert len([r for r in rows if r["key"] == key]) == 2 * (n + 1)
        for k in range(n + 1):
            view = next(v for v in views if v.key == f"{key}_{k}")
            lab = read_labels(view.mat_path)
            # yaw sweep from the source yaw outward, keeping its sign; pitch/roll kept (no jitter)
            want = abs(yaw0) + 30 * k
            assert np.degrees(lab.pose_para[1]) == pytest.approx(np.copysign(want, yaw0), abs=1e-3)
            np.testing.assert_allclose(lab.pose_para[[0, 2, 6]] if k else lab.pose_para,
                                       src.pose_para[[0, 2, 6]] if k else src.pose_para,
                                       rtol=1e-5, atol=1e-4)
            np.testing.assert_array_equal(lab.shape_para, src.shape_para)
            np.testing.assert_array_equal(lab.exp_para, src.exp_para)
            # labels are the model's projection at this view's pose, never the source's copy
            proj = project(model.vertices(lab.shape_para, lab.exp_para), lab.pose_para, (SIZE, SIZE))
            np.testing.assert_allclose(lab.pt3d_68[:, :2], proj[model.landmarks, :2], atol=1e-3)
            np.testing.assert_allclose(lab.pt2d, marched_landmarks(model, proj, lab.pose_para), atol=1e-3)
            pts_2d, pts_3d = read_pts_mat(view.pts_path)
            np.testing.assert_allclose(pts_2d, lab.pt2d, atol=1e-9)
            np.testing.assert_allclose(pts_3d, lab.pt3d_68[:, :2], atol=1e-4)
            lo, hi = proj[model.landmarks, :2].min(0), proj[model.landmarks, :2].max(0)
            assert lab.roi[0] <= lo[0] + 1 and lab.roi[2] >= hi[0] - 1
            assert "SH_Para" not in lab.raw and "Tex_Para" in lab.raw
            mask = read_image(out / "masks" / f"{key}_{k}.png")
            assert mask.shape[:2] == (SIZE, SIZE) and set(np.unique(mask)) <= {0, 128, 255}
            if k == 0:   # view 0 is the source image itself
                img = read_image(view.image_path).astype(int)
                assert np.abs(img - read_image(sample.image_path).astype(int)).mean() < 1.5
            # the mirror: image flipped left-right, yaw and roll negated
            flip = read_labels(out / "Flip" / f"{key}_{k}.mat")
            assert flip.pose_para[1] == pytest.approx(-lab.pose_para[1], abs=1e-6)
            a = read_image(out / "Flip" / f"{key}_{k}.jpg").astype(int)
            b = read_image(view.image_path)[:, ::-1].astype(int)
            assert np.abs(a - b).mean() < 1.5
    assert os.path.exists(out / "sheets" / "synth_000000.jpg")
    assert summary.preview and os.path.exists(summary.preview)


def test_max_stretch_drops_views_and_records_them(synth_root, tmp_path):
    summary = _run(synth_root, tmp_path / "o", max_stretch=0.0, include_source=False)
    assert summary.failed == 0
    rows = _quality(tmp_path / "o")
    dropped = [r for r in rows if r["kept"] == "0"]
    assert dropped and all(float(r["stretched_fraction"]) > 0 for r in dropped)
    for r in rows:
        present = os.path.exists(tmp_path / "o" / f"{r['key']}_{r['view']}.jpg")
        assert present == (r["kept"] == "1")


def test_resume_and_determinism_with_jitter(synth_root, tmp_path):
    a = _run(synth_root, tmp_path / "a", jobs=1, pitch_jitter=5.0, roll_jitter=3.0)
    again = _run(synth_root, tmp_path / "a", jobs=1, pitch_jitter=5.0, roll_jitter=3.0)
    assert again.skipped == 3 and again.processed == 0
    b = _run(synth_root, tmp_path / "b", jobs=2, backend="loky", pitch_jitter=5.0, roll_jitter=3.0)
    assert a.failed == b.failed == 0
    names = sorted(p for p in os.listdir(tmp_path / "a") if p.endswith((".jpg", ".mat")))
    assert len(names) > 3
    for n in names:
        assert filecmp.cmp(tmp_path / "a" / n, tmp_path / "b" / n, shallow=False), n
    # jitter moved pitch and roll of the rotated views
    lab = read_labels(tmp_path / "a" / "synth_000000_1.mat")
    src = read_labels(synth_root / "synth_000000.mat")
    assert abs(lab.pose_para[0] - src.pose_para[0]) > 1e-4


def test_other_stages_run_on_the_output(synth_root, tmp_path):
    _run(synth_root, tmp_path / "p", max_yaw=60.0)
    for stage in ("depth", "posmap"):
        cfg = build_config(stage, explicit={"data_root": str(tmp_path / "p")})
        s = run_stage(stage_class(stage), RunOptions(out=str(tmp_path / stage), jobs=1,
                                                     backend="threading", quiet=True), cfg=cfg)
        assert s.failed == 0 and s.processed == len(find_samples(tmp_path / "p"))


def test_bad_sources_are_failure_rows(synth_root, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = find_samples(synth_root)[0]
    fields = read_mat(good.mat_path)
    image = read_image(good.image_path)

    def put(name, img, **changes):
        write_image(bad / f"{name}.jpg", img)
        f = dict(fields)
        pose = np.array(f["Pose_Para"], np.float32)
        for i, v in changes.items():
            pose[0, int(i[1:])] = v
        f["Pose_Para"] = pose
        write_mat(bad / f"{name}.mat", f)

    p = fields["Pose_Para"].ravel()
    put("ok", image)
    put("outside", image, p3=p[3] + 10 * SIZE)
    put("degenerate", image, p6=p[6] * 1e-5)
    put("tiny", image[:20, :20])
    summary = _run(bad, tmp_path / "out")
    assert summary.processed == 1 and summary.failed == 3
    with open(tmp_path / "out" / "failures.csv", newline="") as f:
        fails = {r["key"]: r["message"] for r in csv.DictReader(f)}
    assert set(fails) == {"outside", "degenerate", "tiny"}
    assert "outside the image" in fails["outside"] and "outside.mat" in fails["outside"]
    assert "degenerate" in fails["degenerate"]
    assert "at least 32" in fails["tiny"]


@pytest.mark.parametrize("option", [{"yaw_step": 0.0}, {"fill": "blue"}, {"ring_scales": [0.9]},
                                    {"max_stretch": 2.0}, {"max_yaw": 120.0}])
def test_bad_options_are_config_errors(synth_root, tmp_path, option):
    with pytest.raises(ConfigError):
        _run(synth_root, tmp_path / "x", **option)
