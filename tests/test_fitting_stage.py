"""Stage fit_3dmm: landmark sources, 300W-LP .mat outputs, manifest error columns, failures."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from conftest import run_named

from face3d_data.coords import canonical_to_pt2d
from face3d_data.fitting.synthetic import synthetic_faces
from face3d_data.io import write_image, write_landmarks_txt, write_mat, write_pts
from face3d_data.morphable.builtin import builtin_model
from face3d_data.w300lp import read_labels
from face3d_data.w300lp.pose import project


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    model = builtin_model()
    faces = synthetic_faces(model, 4, seed=21, yaw_deg=(-30, 30), silhouette=True)
    image = np.full((450, 450, 3), 90, np.uint8)
    os.makedirs(root / "landmarks")
    write_landmarks_txt(str(root / "landmarks" / "a.txt"), faces.landmarks[0])
    write_pts(str(root / "b.pts"), faces.landmarks[1])
    write_mat(str(root / "c.mat"), {"pt2d": canonical_to_pt2d(faces.landmarks[2]).T.copy()})
    bad = faces.landmarks[3].copy()
    bad[:, 0] = 5.0                                   # all points on one vertical line
    write_landmarks_txt(str(root / "landmarks" / "d.txt"), bad)
    for name in "abcd":
        write_image(str(root / f"{name}.jpg"), image)
    return {"root": str(root), "faces": faces, "model": model}


def test_fit_3dmm_stage(folder, tmp_path):
    summary = run_named("fit_3dmm", tmp_path, img_folder=folder["root"], model="builtin", detect=False)
    assert summary.processed == 3 and summary.failed == 1
    failures = open(summary.failures).read()
    assert "d.txt" in failures and "collinear" in failures
    manifest = pd.read_csv(summary.manifest) if summary.manifest.endswith(".csv") \
        else pd.read_parquet(summary.manifest)
    ok = manifest[manifest["error_px"].notna()].set_index("key")
    assert set(ok.index) == {"a", "b", "c"}
    assert dict(ok["landmark_source"]) == {"a": "landmarks_txt", "b": "pts", "c": "mat"}
    assert (ok["error_px"] < 3.0).all() and (ok["error_normalized"] < 0.02).all()
    model, faces = folder["model"], folder["faces"]
    for i, key in enumerate("abc"):
        labels = read_labels(str(tmp_path / f"{key}.mat"))
        # Independent check: the written Pose_Para/Shape_Para/Exp_Para reproject onto the input.
        verts = model.vertices(labels.shape_para, labels.exp_para)[model.landmarks]
        reproj = project(verts, labels.pose_para, (450, 450))[:, :2]
        assert np.abs(reproj - faces.landmarks[i]).mean() < 3.0
        assert abs(np.degrees(labels.pose_para[1] - faces.pose_para[i, 1])) < 5.0
        np.testing.assert_allclose(labels.pt2d, faces.landmarks[i], atol=1e-4)
        # roi: the landmarks' square box, stored 1-based like pt2d (was 0-based: off by one)
        lo, hi = faces.landmarks[i].min(0), faces.landmarks[i].max(0)
        half = (hi - lo).max() / 2
        box = np.r_[(lo + hi) / 2 - half, (lo + hi) / 2 + half]
        np.testing.assert_allclose(labels.raw["roi"].ravel(), box + 1, atol=0.5)
        np.testing.assert_allclose(labels.roi, box, atol=0.5)
        assert os.path.isfile(tmp_path / f"{key}.jpg")
    assert summary.preview and os.path.isfile(summary.preview)
