"""Stage synth_300wlp end to end: files in the 300W-LP layout, splits by identity, labels, preview."""

import json

import numpy as np
import pytest
from conftest import run_named

from face3d_data.errors import ConfigError
from face3d_data.io import read_datalist
from face3d_data.morphable import builtin_model
from face3d_data.w300lp import find_samples, project, read_labels, read_pts_mat


def run(tmp_path, **options):
    return run_named("synth_300wlp", tmp_path, **{"count": 6, "image_size": 160, "views_per_identity": 2,
                                                  **options})


def test_synth_stage_writes_300wlp_layout(tmp_path):
    summary = run(tmp_path)
    assert summary.failed == 0 and summary.processed == 6
    samples = find_samples(tmp_path)
    assert [s.key for s in samples] == [f"synth_{i:06d}" for i in range(6)]
    model = builtin_model()
    shapes, marched = [], 0
    for s in samples:
        assert s.pts_path is not None
        lab = read_labels(s.mat_path)
        v = model.vertices(lab.shape_para, lab.exp_para)[model.landmarks]
        np.testing.assert_allclose(project(v, lab.pose_para, (160, 160))[:, :2], lab.pt2d, atol=1e-4)
        pts_2d, pts_3d = read_pts_mat(s.pts_path)
        np.testing.assert_allclose(pts_3d, lab.pt2d, atol=1e-9)
        # 2D-style points: only jaw points of one side (the one turned away) move to the silhouette
        np.testing.assert_allclose(pts_2d[8:9], lab.pt2d[8:9], atol=1e-9)
        np.testing.assert_allclose(pts_2d[17:], lab.pt2d[17:], atol=1e-9)
        moved = np.abs(pts_2d[:17] - lab.pt2d[:17]).max(axis=1) > 1e-6
        assert not (moved[:8].any() and moved[9:].any())
        marched += int(moved.any())
        shapes.append(lab.shape_para)
    assert marched > 0  # some faces turned enough for the silhouette to differ from the fixed jaw
    # views of one identity share the shape coefficients; different identities do not
    np.testing.assert_array_equal(shapes[0], shapes[1])
    assert not np.array_equal(shapes[1], shapes[2])
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["count"] == 6 and len(stats["channel_mean_rgb"]) == 3
    assert sum(stats["splits"].values()) == 6
    rows = [r for split in ("train", "val", "test") for r in read_datalist(tmp_path / f"{split}.txt", tmp_path)]
    assert len(rows) == 6
    lines = (tmp_path / "labels.txt").read_text().splitlines()
    assert len(lines) == 6
    first = lines[0].split()
    assert first[0] == "synth_000000.jpg" and len(first) == 1 + 7 + model.n_shape + model.n_exp
    lab0 = read_labels(tmp_path / "synth_000000.mat")
    np.testing.assert_allclose(np.array(first[1:8], float), lab0.pose_para, rtol=1e-6)
    assert (tmp_path / "preview.png").is_file()


def test_split_keeps_identities_together(tmp_path):
    run(tmp_path, count=24, views_per_identity=3, image_size=64, split=[0.34, 0.33, 0.33])
    where, listed = {}, []
    for split in ("train", "val", "test"):
        for row in read_datalist(tmp_path / f"{split}.txt", tmp_path):
            index = int(str(row[0]).rsplit("_", 1)[1].split(".")[0])
            listed.append(index)
            where.setdefault(index // 3, set()).add(split)
    assert sorted(listed) == list(range(24))                 # every sample in exactly one list
    assert set().union(*where.values()) == {"train", "val", "test"}  # the split is not all train
    assert all(len(s) == 1 for s in where.values())          # views of an identity stay together


def test_bad_options_rejected(tmp_path):
    with pytest.raises(ConfigError, match="split"):
        run(tmp_path, split=[0.5, 0.2, 0.2])
    with pytest.raises(ConfigError, match="yaw_range_deg"):
        run(tmp_path, yaw_range_deg=120)
