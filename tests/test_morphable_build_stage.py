"""Stage build_model: BFM fixtures -> native .npz (+ face3d BFM.mat), trimmed UVs, subset, report."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.io
from conftest import run_named

from face3d_data.morphable import MorphableModel, load_model
from face3d_data.morphable.checks import model_report
from face3d_data.morphable.testing import write_bfm_fixtures


def run(out, **options):
    return run_named("build_model", out, **options)


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return write_bfm_fixtures(tmp_path_factory.mktemp("bfm"))


def test_build_from_bfm2009_with_raw_uv_and_face3d_mat(fx, tmp_path):
    raw_uv = np.random.default_rng(0).uniform(size=(len(fx.raw["mean"]), 2))
    scipy.io.savemat(tmp_path / "BFM_UV_raw.mat", {"UV": raw_uv})
    out = tmp_path / "out"
    s = run(out, bfm=str(fx.paths["bfm2009"]), exp=str(fx.paths["model_expression"]),
            info=str(fx.paths["model_info"]), uv=str(tmp_path / "BFM_UV_raw.mat"),
            expected_vertices=len(fx.trim), face3d_mat=True)
    assert s.failed == 0, s.records
    model = MorphableModel.load(out / "model.npz")
    assert model.n_vertices == len(fx.trim)
    np.testing.assert_allclose(model.uv, raw_uv[fx.trim], atol=1e-6)  # bad-vertex fix is out of range here
    f3d = load_model(out / "BFM.mat")
    ep = np.ones(model.n_exp)
    np.testing.assert_allclose(f3d.vertices(None, ep), model.vertices(None, ep), atol=1e-2)
    # the report describes the written model; the re-load timing is a manifest column, not a report field
    report = json.loads((out / "model_report.json").read_text())
    assert report == json.loads(json.dumps(model_report(model)))
    assert report["n_vertices"] == len(fx.trim) == model.n_vertices and report["has_uv"]
    assert "load_seconds" not in report
    (record,) = s.records
    assert record["n_vertices"] == len(fx.trim) and record["n_exp"] == model.n_exp
    assert np.isfinite(record["load_seconds"]) and record["load_seconds"] > 0
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert np.isfinite(manifest["load_seconds"]).all() and (manifest["load_seconds"] > 0).all()


def test_build_with_subset_and_count_check(fx, tmp_path):
    keep = np.union1d(np.arange(100), fx.keypoints)
    scipy.io.savemat(tmp_path / "front_idx.mat", {"idx": (keep + 1).reshape(-1, 1)})
    s = run(tmp_path / "a", bfm=str(fx.paths["face3d"]), subset=str(tmp_path / "front_idx.mat"),
            expected_vertices=len(keep))
    assert s.failed == 0
    assert MorphableModel.load(tmp_path / "a" / "model.npz").n_vertices == len(keep)
    bad = run(tmp_path / "b", bfm=str(fx.paths["face3d"]), expected_vertices=53215)
    assert bad.failed == 1


def test_build_builtin_export(tmp_path):
    s = run(tmp_path)
    assert s.failed == 0 and (tmp_path / "preview.png").is_file()
    assert MorphableModel.load(tmp_path / "model.npz").n_vertices > 5000
