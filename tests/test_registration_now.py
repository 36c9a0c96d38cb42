"""NoW-style evaluation: self = 0, a moved copy = 0 after refinement, a known bump = its height."""

from __future__ import annotations

import json

import numpy as np
import pytest

from face3d_data.io import load_npy, write_mesh
from face3d_data.morphable import load_model
from face3d_data.registration.landmarks import NOW7_IBUG, apply_similarity
from face3d_data.registration.now import now_crop, now_error
from face3d_data.registration.surface import orient_outward, subdivide, vertex_normals
from face3d_data.registration.synthetic import _random_rotation
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class


@pytest.fixture(scope="module")
def face():
    m = load_model("builtin")
    v = m.mean.astype(np.float64) / 1000.0      # mm
    tri, _ = orient_outward(v, m.triangles)
    return m, v, tri


def test_crop_follows_the_now_radius_rule(face):
    m, v, _ = face
    lm7 = v[m.landmarks[NOW7_IBUG]]
    crop = now_crop(v, lm7)
    bridge = 0.5 * (lm7[1] + lm7[2])
    centre = lm7[4] + 0.3 * (bridge - lm7[4])
    r = 1.4 * (np.linalg.norm(lm7[0] - lm7[3]) + np.linalg.norm(bridge - lm7[4])) / 2
    d = np.linalg.norm(v - centre, axis=1)
    np.testing.assert_array_equal(crop, d <= r)
    assert 0.1 < crop.mean() < 0.6


def test_mesh_against_itself_is_zero(face):
    m, v, tri = face
    lm7 = v[m.landmarks[NOW7_IBUG]]
    err = now_error(v, tri, lm7, v, lm7)
    assert err.median < 1e-6 and err.distances.max() < 1e-5


def test_moved_mesh_is_zero_after_rigid_refinement(face):
    m, v, tri = face
    rng = np.random.default_rng(4)
    R = _random_rotation(rng, 10.0)
    pred = apply_similarity(v, 1.05, R, np.array([30.0, -12.0, 7.0]))
    pred_lm7 = pred[m.landmarks[NOW7_IBUG]] + rng.normal(scale=1.5, size=(7, 3))   # imperfect landmarks
    scan_lm7 = v[m.landmarks[NOW7_IBUG]]
    rough = now_error(pred, tri, pred_lm7, v, scan_lm7, refine=False)
    refined = now_error(pred, tri, pred_lm7, v, scan_lm7)
    assert rough.median > 0.3
    assert refined.median < 0.01 and refined.mean < 0.02


def test_known_bump_gives_its_distances(face):
    m, v, tri = face
    sv, st = subdivide(v, tri)   # the scan: resampled, with a bump on one cheek
    n = vertex_normals(sv, st)
    c = 0.5 * (v[m.landmarks[12]] + v[m.landmarks[54]])
    c = sv[np.argmin(np.linalg.norm(sv - c, axis=1))]
    h = 2.0 * np.exp(-np.sum((sv - c) ** 2, 1) / (2 * 8.0 ** 2))
    scan = sv + h[:, None] * n
    lm7 = v[m.landmarks[NOW7_IBUG]]   # the bump is away from the 7 landmarks
    err = now_error(v, tri, lm7, scan, lm7, refine=False)
    hh = h[err.crop]
    assert hh.max() > 1.5
    dev = np.abs(err.distances - hh)
    assert np.all(dev <= 0.05 + 0.05 * hh), dev.max()
    refined = now_error(v, tri, lm7, scan, lm7)
    assert np.median(refined.distances[hh < 0.01]) < 0.05
    assert abs(refined.distances.max() - hh.max()) < 0.3 * hh.max()


def test_evaluate_meshes_stage(face, tmp_path):
    m, v, tri = face
    scans, pred = tmp_path / "scans", tmp_path / "pred"
    scans.mkdir()
    pred.mkdir()
    # scan in metres with 68 landmarks; prediction: the same face moved, in the model's topology (no landmarks file)
    write_mesh(str(scans / "a.ply"), v / 1000.0, tri)
    np.save(scans / "a_landmarks.npy", v[m.landmarks] / 1000.0)
    write_mesh(str(pred / "a.ply"), apply_similarity(v, 1000.0, np.eye(3), np.array([5.0, 0, 0])), tri)
    write_mesh(str(pred / "orphan.ply"), v, tri)     # no scan of that stem: ignored
    cfg = build_config("evaluate_meshes", explicit={"pred": str(pred), "scans": str(scans)})
    out = tmp_path / "out"
    summary = run_stage(stage_class("evaluate_meshes"), RunOptions(out=str(out), jobs=1, quiet=True,
                                                                   backend="threading"), cfg=cfg)
    assert summary.failed == 0 and summary.processed == 1
    result = json.loads((out / "summary.json").read_text())
    assert result["scans"] == 1 and result["median_mm"] < 0.01
    d = load_npy(str(out / "a" / "distances.npy"))
    assert len(d) == result["points"] > 100
    assert (out / "cumulative.csv").read_text().splitlines()[-1].endswith("1.000000")
