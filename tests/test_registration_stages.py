"""register_scans through the runner: outputs, failures rows, split, resume (short NICP schedule)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from face3d_data.errors import ConfigError
from face3d_data.io import write_mesh
from face3d_data.io.scan import read_scan
from face3d_data.morphable import load_model
from face3d_data.registration import make_synthetic_scan
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class

FAST = {"fit_model": False, "stiffness": "50", "landmark_weights": "1", "distance_caps": "0.05", "max_inner": 1}


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    root = tmp_path_factory.mktemp("scans")
    model = load_model("builtin")
    sc = make_synthetic_scan(model, seed=2, unit="cm")
    write_mesh(str(root / "subj01_a.ply"), sc.vertices, sc.triangles, colors=sc.colors)
    np.save(root / "subj01_a_landmarks.npy", sc.landmarks[17:])                # 51 points
    write_mesh(str(root / "subj02_b.ply"), sc.vertices, sc.triangles)
    return {"root": str(root), "model": model, "scan": sc}


def _run(out, **explicit):
    cfg = build_config("register_scans", explicit=explicit)
    return run_stage(stage_class("register_scans"), RunOptions(out=str(out), jobs=1, quiet=True,
                                                               backend="threading"), cfg=cfg)


def test_register_scans_stage(scans, tmp_path):
    out = tmp_path / "reg"
    summary = _run(out, scans=scans["root"], subject_regex=r"^(subj\d+)", **FAST)
    assert summary.processed == 1 and summary.failed == 1           # subj02 has no landmark file
    fails = (out / "failures.csv").read_text()
    assert "subj02_b" in fails and "landmark" in fails
    model = scans["model"]
    reg = read_scan(str(out / "subj01_a" / "registered.ply"))
    assert len(reg.vertices) == model.n_vertices and reg.colors is not None
    data = np.load(out / "subj01_a" / "registered.npz")
    np.testing.assert_allclose(data["vertices_scan"], reg.vertices, atol=1e-5)
    for key, shape in (("vertices_model", (model.n_vertices, 3)), ("valid", (model.n_vertices,)),
                       ("distance_mm", (model.n_vertices,)), ("weight", (model.n_vertices,))):
        assert data[key].shape == shape
    qa = json.loads((out / "subj01_a" / "qa.json").read_text())
    assert qa["unit"] == "cm" and qa["subject"] == "subj01" and qa["status"] in ("ok", "failed_qa")
    # the registered mesh lies on the scan, in the scan's unit (cm)
    sc = scans["scan"]
    err = np.linalg.norm(data["vertices_scan"] - sc.truth, axis=1)[sc.on_scan]
    assert np.median(err) < 0.6                                     # cm, short schedule
    with open(out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["scan"] for r in rows] == ["subj01_a"] and rows[0]["split"] in ("train", "test")
    # resumable: a second run does nothing
    again = _run(out, scans=scans["root"], subject_regex=r"^(subj\d+)", **FAST)
    assert again.processed == 0


def test_register_scans_bad_options(scans, tmp_path):
    with pytest.raises(ConfigError):
        _run(tmp_path / "x", scans=scans["root"], units="furlong")
    with pytest.raises(ConfigError):
        _run(tmp_path / "y", scans=scans["root"], landmark_format=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError):
        _run(tmp_path / "z", scans=scans["root"], stiffness="50,20", landmark_weights="1")


def test_scan_chain_register_augment_evaluate(tmp_path):
    """What the demo runs: synthetic scans -> register_scans -> augment_views and evaluate_meshes."""
    from face3d_data.registration.synthetic import write_synthetic_scans

    scans = tmp_path / "scans"
    paths = write_synthetic_scans(str(scans), count=1)
    assert len(paths) == 1 and (scans / "synthetic_000_landmarks.npy").exists()
    reg = tmp_path / "registered"
    s1 = _run(reg, scans=str(scans), **FAST, max_now_median_mm=5.0)
    assert s1.failed == 0
    qa = json.loads((reg / "synthetic_000" / "qa.json").read_text())
    assert qa["status"] == "ok", qa["reasons"]
    cfg = build_config("augment_views", explicit={"registered": str(reg), "yaws": "0:60:30", "pitches": "0",
                                                  "size": 96})
    s2 = run_stage(stage_class("augment_views"), RunOptions(out=str(tmp_path / "views"), jobs=1, quiet=True,
                                                            backend="threading"), cfg=cfg)
    assert s2.failed == 0 and len(list((tmp_path / "views" / "synthetic_000").glob("*.mat"))) == 3
    cfg = build_config("evaluate_meshes", explicit={"pred": str(reg), "scans": str(scans)})
    s3 = run_stage(stage_class("evaluate_meshes"), RunOptions(out=str(tmp_path / "eval"), jobs=1, quiet=True,
                                                              backend="threading"), cfg=cfg)
    assert s3.failed == 0
    result = json.loads((tmp_path / "eval" / "summary.json").read_text())
    # the registration scored against its own scan: about the QA's NoW-crop figure
    assert abs(result["median_mm"] - qa["now_crop"]["median_mm"]) < 0.2
