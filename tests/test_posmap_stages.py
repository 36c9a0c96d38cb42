"""The rotate_300wlp, posmap, uv_assets and validate_posmap stages on a tiny 300W-LP-layout tree."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import run_named

from face3d_data.coords import canonical_to_pt2d
from face3d_data.errors import InputError
from face3d_data.io import load_npy, read_datalist, read_image, read_mat, write_image, write_mat
from face3d_data.morphable.testing import smooth_model
from face3d_data.posmap import decode_landmarks
from face3d_data.w300lp import project
from pipelines.core import read_manifest

NAMES = ["AFW/AFW_100_1_0", "AFW/AFW_100_1_1", "AFW_Flip/AFW_100_1_0", "HELEN/HELEN_7_2_0",
         "IBUG/IBUG_image_003_1_0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A 300W-LP-layout tree labelled with a saved smooth model."""
    root = tmp_path_factory.mktemp("300W_LP")
    model = smooth_model(2500, 6, 3, seed=5, cubic=False)
    model_path = str(root.parent / "smooth_model.npz")
    model.save(model_path)
    rng = np.random.default_rng(0)
    for i, name in enumerate(NAMES):
        shape = (rng.normal(size=6) * 5e3).reshape(6, 1)
        exp = rng.normal(size=(3, 1)).astype(np.float32)
        pose = np.array([[0.1, rng.uniform(-0.8, 0.8), 0.1, 225 + 10 * i, 220, 0.0, 1.2e-3]],
                        np.float32)
        projected = project(model.vertices(shape, exp), pose, (450, 450))
        pt2d = canonical_to_pt2d(projected[model.landmarks, :2]).T
        image = rng.integers(0, 255, (450, 450, 3), dtype=np.uint8)
        write_image(str(root / f"{name}.jpg"), image)
        write_mat(str(root / f"{name}.mat"), {
            "Pose_Para": pose, "Shape_Para": shape, "Exp_Para": exp,
            "Tex_Para": rng.normal(size=(5, 1)), "pt2d": pt2d,
            "roi": np.array([[100, 90, 360, 350]], np.int16)})
        if name.startswith("AFW/"):
            subset, stem = name.split("/")
            write_mat(str(root / "landmarks" / subset / f"{stem}_pts.mat"),
                      {"pts_2d": pt2d.T.copy(), "pts_3d": pt2d.T.copy()})
    return {"root": str(root), "model": model, "model_path": model_path}


def test_rotate_stage_writes_layout_and_exact_labels(dataset, tmp_path):
    out = tmp_path / "rot"
    summary = run_named("rotate_300wlp", out, data_root=dataset["root"], angles=[30, -45],
                   model=dataset["model_path"])
    assert summary.failed == 0 and summary.processed == len(NAMES)
    for name in NAMES:
        for theta in ("30", "-45"):
            assert os.path.isfile(out / f"{name}_angle_{theta}.jpg")
            fields = read_mat(str(out / f"{name}_angle_{theta}.mat"))
            source = read_mat(os.path.join(dataset["root"], f"{name}.mat"))
            assert set(fields) == set(source)
            np.testing.assert_array_equal(fields["Shape_Para"], source["Shape_Para"])
            assert fields["Pose_Para"].shape == (1, 7) and fields["Pose_Para"].dtype == np.float32
    assert os.path.isfile(out / "landmarks/AFW/AFW_100_1_0_angle_30_pts.mat")
    frame, _ = read_manifest(summary.manifest)
    assert frame["label_error_px"].max() < 1e-3
    assert os.path.isfile(out / "preview.png")
    # independent check of one output: the model landmarks land on the rotated projection
    model = dataset["model"]
    src = read_mat(os.path.join(dataset["root"], "HELEN/HELEN_7_2_0.mat"))
    new = read_mat(str(out / "HELEN/HELEN_7_2_0_angle_30.mat"))
    v = model.vertices(src["Shape_Para"], src["Exp_Para"])[model.landmarks]
    before = project(v, src["Pose_Para"], (450, 450))[:, :2] - 224.5
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    expected = np.stack([c * before[:, 0] + s * before[:, 1],
                         -s * before[:, 0] + c * before[:, 1]], 1) + 224.5
    np.testing.assert_allclose(project(v, new["Pose_Para"], (450, 450))[:, :2], expected, atol=1e-3)


def test_posmap_stage_datalists_and_validation(dataset, tmp_path):
    out = tmp_path / "posmap"
    summary = run_named("posmap", out, data_root=dataset["root"], model=dataset["model_path"],
                   resolution=128)
    assert summary.failed == 0 and summary.processed == len(NAMES)
    frame, meta = read_manifest(summary.manifest)
    assert {"crop_cx", "crop_cy", "crop_size", "jitter_dx", "jitter_scale"} <= set(frame.columns)
    assert frame["jitter_scale"].between(0.9, 1.1).all() and (frame["jitter_scale"] != 1).all()
    pos = load_npy(str(out / "AFW/AFW_100_1_0.npy"))
    assert pos.shape == (128, 128, 3) and pos.dtype == np.float32
    assert read_image(str(out / "AFW/AFW_100_1_0.jpg")).shape == (128, 128, 3)
    rows = []
    for split in ("train", "val", "test"):
        rows += read_datalist(str(out / "datalist" / f"posmap_{split}.txt"), str(out), columns=2)
    assert sorted(os.path.relpath(r[0], out).replace(os.sep, "/") for r in rows) == \
        sorted(n + ".jpg" for n in NAMES)
    # views and flips of one face share a split
    split_of = {}
    for split in ("train", "val", "test"):
        for img, _ in read_datalist(str(out / "datalist" / f"posmap_{split}.txt"), str(out)):
            split_of[os.path.relpath(img, out).replace(os.sep, "/")] = split
    assert split_of["AFW/AFW_100_1_0.jpg"] == split_of["AFW/AFW_100_1_1.jpg"] == \
        split_of["AFW_Flip/AFW_100_1_0.jpg"]
    assert os.path.isfile(out / "uv-data" / "uv_face_mask.png")
    # a rerun with the same seed is identical (seeded jitter)
    again = run_named("posmap", tmp_path / "again", data_root=dataset["root"],
                 model=dataset["model_path"], resolution=128)
    assert np.array_equal(load_npy(str(tmp_path / "again/AFW/AFW_100_1_0.npy")), pos)
    del again

    report_dir = tmp_path / "validate"
    v = run_named("validate_posmap", report_dir, posmap_dir=str(out))
    assert v.failed == 0
    report = json.loads((report_dir / "report.json").read_text())
    assert report["samples"] == len(NAMES)
    assert report["decode"] == "exact" and report["exact_keypoints"] == 68
    assert report["max_error_px"] < 1e-3  # exact decoding: float rounding only
    assert report["samples_with_holes"] == 0 and report["samples_with_non_finite"] == 0
    assert os.path.isfile(report_dir / "nme_histogram.png") and os.path.isfile(report_dir / "worst.png")


def test_validation_flags_a_broken_posmap(dataset, tmp_path):
    out = tmp_path / "posmap"
    run_named("posmap", out, data_root=dataset["root"], model=dataset["model_path"], resolution=64,
         jitter=False, posmap_png_every=0)
    broken = load_npy(str(out / "HELEN/HELEN_7_2_0.npy"))
    broken[..., 1] += 1.0  # the classic one-pixel frame error
    broken[20:30, 20:30] = 0.0
    np.save(str(out / "HELEN/HELEN_7_2_0.npy"), broken)
    run_named("validate_posmap", tmp_path / "v", posmap_dir=str(out), outlier_nme=0.002)
    report = json.loads((tmp_path / "v" / "report.json").read_text())
    flagged = [o["key"] for o in report["outliers"]]
    assert flagged == ["HELEN/HELEN_7_2_0"]
    assert report["outliers"][0]["holes"] > 0


def test_uv_assets_stage_is_deterministic(dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    run_named("uv_assets", a, model=dataset["model_path"], resolution=96)
    run_named("uv_assets", b, model=dataset["model_path"], resolution=96)
    for name in ("uv_face_mask.png", "uv_weight_mask.png", "uv_kpt_ind.txt", "uv_kpt_uv.txt",
                 "uv_kpt_weights.npz", "face_ind.txt", "triangles.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    mask = read_image(str(a / "uv_face_mask.png"))[..., 0]
    face_ind = np.loadtxt(a / "face_ind.txt", dtype=np.int64)
    np.testing.assert_array_equal(face_ind, np.flatnonzero(mask))
    kpt = np.loadtxt(a / "uv_kpt_ind.txt").astype(np.int32)
    assert kpt.shape == (2, 68)
    tri = np.loadtxt(a / "triangles.txt", dtype=np.int64)
    assert tri.shape[1] == 3 and tri.max() < len(face_ind)
    # PRNet usage: vertices = pos[face_ind], decoded keypoints = pos[kpt[1], kpt[0]]
    pos = np.random.default_rng(0).random((96, 96, 3)).astype(np.float32)
    np.testing.assert_array_equal(decode_landmarks(pos, kpt), pos[kpt[1], kpt[0]])
    # exact decoding from the saved weights alone: a map rendered from random vertex values
    # gives back the landmark vertices' values
    from face3d_data.posmap import build_uv_assets
    from face3d_data.render import interpolate

    model = dataset["model"]
    assets = build_uv_assets(model, 96)
    values = np.random.default_rng(1).normal(size=(model.n_vertices, 3)).astype(np.float32)
    rendered = interpolate(values, assets.raster, assets.triangles)
    saved = np.load(a / "uv_kpt_weights.npz")
    assert int(saved["resolution"]) == 96 and saved["exact"].all()
    decoded = (rendered.reshape(-1, 3)[saved["texels"]] * saved["weights"][..., None]).sum(1)
    np.testing.assert_allclose(decoded, values[model.landmarks], atol=1e-4)


def test_batch_vertices_dedupes_and_matches_the_model(dataset):
    from face3d_data.posmap import batch_vertices
    from face3d_data.w300lp import model_coefficients

    model = dataset["model"]
    a = {"Shape_Para": np.arange(6.0).reshape(6, 1) * 1e3, "Exp_Para": np.ones((3, 1))}
    b = {"Shape_Para": a["Shape_Para"], "Exp_Para": np.nextafter(a["Exp_Para"], 2)}
    coeffs = [model_coefficients(model, f, "x.mat") for f in (a, b, a)]
    out = batch_vertices(model, coeffs)
    assert out[0] is not out[1] and np.array_equal(out[0], out[2])  # one ulp apart: distinct rows
    assert not out[0].flags.writeable
    for vertices, (shape, exp) in zip(out, coeffs):
        expected = (model.mean.astype(np.float64)
                    + np.einsum("nck,k->nc", model.shape_basis[..., :shape.size].astype(np.float64), shape)
                    + np.einsum("nck,k->nc", model.exp_basis[..., :exp.size].astype(np.float64), exp))
        np.testing.assert_allclose(vertices, expected, rtol=1e-5, atol=1e-2)
    assert batch_vertices(model, []) == []
    with pytest.raises(InputError, match="coefficients"):
        model_coefficients(model, {"Shape_Para": np.zeros((model.n_shape + 1, 1))}, "d.mat")


def test_posmap_fails_damaged_and_tiny_images_by_name(dataset, tmp_path):
    """A JPEG damaged in its middle and a 1×1 image (valid labels) are failures rows naming the
    image; neither becomes a training crop in the datalist."""
    import shutil

    from test_io import damaged_in_the_middle

    root = tmp_path / "data"
    shutil.copytree(dataset["root"], root)
    damaged = root / "AFW/AFW_100_1_1.jpg"
    damaged.write_bytes(damaged_in_the_middle(damaged.read_bytes()))
    tiny = root / "HELEN/HELEN_7_2_0.jpg"
    write_image(str(tiny), np.full((1, 1, 3), 128, np.uint8))
    out = tmp_path / "posmap"
    summary = run_named("posmap", out, data_root=str(root), model=dataset["model_path"], resolution=64)
    assert summary.failed == 2 and summary.processed == len(NAMES) - 2
    failures = open(summary.failures).read()
    assert "AFW_100_1_1.jpg" in failures and "corrupt JPEG data" in failures
    assert "HELEN_7_2_0.jpg" in failures and "1×1 image" in failures
    listed = [str(p) for split in ("train", "val", "test")
              for row in read_datalist(out / "datalist" / f"posmap_{split}.txt", out) for p in row]
    assert len(listed) == 2 * (len(NAMES) - 2)
    assert not any("AFW_100_1_1" in p or "HELEN_7_2_0" in p for p in listed)
