"""augment_views: labels re-project from the written Pose_Para, rendered colours are the texture's."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from face3d_data.io import read_datalist, read_image, write_text
from face3d_data.io.atomic import write_bytes
from face3d_data.morphable import load_model
from face3d_data.registration.pipeline import _sample_colors
from face3d_data.registration.regions import region_classes
from face3d_data.registration.views import parse_angles, render_view, view_pose
from face3d_data.w300lp import find_samples, project, read_labels
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class

SIZE = 128


def _texture(h=64, w=64):
    """A smooth RGB texture and its exact continuous function of (u, v)."""
    def f(u, v):
        return np.stack([0.5 + 0.4 * np.sin(2.0 * u), 0.5 + 0.4 * np.cos(1.5 * v), 0.3 + 0.5 * u * v], -1)
    ys, xs = np.mgrid[0:h, 0:w]
    u, v = xs / (w - 1), 1.0 - ys / (h - 1)
    return np.round(f(u, v) * 255).astype(np.uint8), f


@pytest.fixture(scope="module")
def model():
    return load_model("builtin")


@pytest.fixture(scope="module")
def registered(model, tmp_path_factory):
    """A register_scans-style folder: one scan whose colours are texture lookups at the model UVs."""
    root = tmp_path_factory.mktemp("registered")
    rng = np.random.default_rng(0)
    vm = model.vertices(rng.normal(size=model.n_shape) * model.shape_std * 0.5).astype(np.float32)
    _, f = _texture()
    colors = f(model.uv[:, 0].astype(np.float64), model.uv[:, 1].astype(np.float64)).astype(np.float32)
    classes = region_classes(model)
    n = model.n_vertices
    buf = io.BytesIO()
    np.savez(buf, vertices_model=vm, triangles=model.triangles, valid=np.ones(n, bool),
             weight=np.ones(n, np.float32), classes=classes, colors=colors,
             shape_para=np.zeros(model.n_shape, np.float32), exp_para=np.zeros(model.n_exp, np.float32))
    write_bytes(str(root / "scanA" / "registered.npz"), buf.getvalue())
    write_text(str(root / "scanA" / "qa.json"), json.dumps({"status": "ok", "split": "test", "subject": "A"}))
    # a failed scan: skipped and listed
    write_bytes(str(root / "scanB" / "registered.npz"), buf.getvalue())
    write_text(str(root / "scanB" / "qa.json"), json.dumps({"status": "failed_qa", "split": "train"}))
    return {"root": str(root), "vm": vm, "colors": colors}


def test_parse_angles():
    assert parse_angles("0:90:15") == [0, 15, 30, 45, 60, 75, 90]
    assert parse_angles("-30,0,15") == [-30, 0, 15]
    assert parse_angles(["-30", 5]) == [-30, 5]
    with pytest.raises(ValueError):
        parse_angles("0:10:0")


def test_visible_vertex_colour_is_its_texture_lookup(model, registered):
    vm, colors = registered["vm"], registered["colors"]
    face = region_classes(model) >= 1
    pose = view_pose(vm, face, SIZE, 5.0, 30.0)
    view = render_view(vm, model.triangles, colors, pose, SIZE)
    px = np.round(view.projected[:, :2]).astype(int)
    inside = np.all((px >= 0) & (px < SIZE), axis=1)
    # visible face vertices sitting within a tenth of a pixel of a pixel centre: the pixel shows them
    close = np.all(np.abs(view.projected[:, :2] - px) < 0.1, axis=1)
    # away from silhouettes (the 5x5 pixels around are all covered), where a 0.1 px offset matters
    import cv2

    interior = cv2.erode(view.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    inside &= interior[np.clip(px[:, 1], 0, SIZE - 1), np.clip(px[:, 0], 0, SIZE - 1)]
    pick = np.flatnonzero(view.visible & face & inside & close)
    assert len(pick) > 20
    rendered = view.image[px[pick, 1], px[pick, 0]].astype(np.float64)
    np.testing.assert_allclose(rendered, colors[pick] * 255.0, atol=4.0)   # 0.1 px of colour gradient + rounding


def test_colours_sampled_from_a_texture_are_bilinear_lookups():
    tex, f = _texture(32, 48)
    uv = np.array([[0.1, 0.2], [0.9, 0.1], [0.4, 0.8]], np.float32)
    tri = np.array([[0, 1, 2]])
    bary = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    c = _sample_colors(None, uv, tex, tri, np.array([0, 0]), bary)
    q = bary @ uv.astype(np.float64)
    np.testing.assert_allclose(c, f(q[:, 0], q[:, 1]), atol=0.02)


def test_augment_views_stage(model, registered, tmp_path):
    cfg = build_config("augment_views", explicit={"registered": registered["root"], "yaws": "0,45",
                                                   "pitches": "-20,10", "size": SIZE, "jitter": 2.0})
    out = tmp_path / "views"
    summary = run_stage(stage_class("augment_views"), RunOptions(out=str(out), jobs=1, quiet=True,
                                                                 backend="threading"), cfg=cfg)
    assert summary.failed == 0 and summary.processed == 1
    assert (out / "skipped.txt").read_text().split() == ["scanB"]
    samples = find_samples(str(out))
    assert len(samples) == 4
    for s in samples:
        labels = read_labels(s.mat_path)
        image = read_image(s.image_path)
        assert image.shape == (SIZE, SIZE, 3)
        npz = np.load(str(s.mat_path)[:-4] + ".npz")
        # re-projecting the registered mesh with the WRITTEN Pose_Para reproduces the written landmarks
        proj = project(registered["vm"].astype(np.float64), labels.pose_para, (SIZE, SIZE))
        assert np.abs(proj[model.landmarks, :2] - labels.pt3d_68[:, :2]).max() < 0.5
        np.testing.assert_allclose(labels.pt2d, npz["lm68_2d"], atol=1e-3)
        assert np.abs(proj - npz["vertices"]).max() < 0.5
        yaw = float(npz["yaw_deg"])
        assert abs(np.rad2deg(labels.pose_para[1]) - yaw) < 1e-3
        assert npz["vertex_valid"].sum() == (npz["visible"] & True).sum()
    rows = read_datalist(str(out / "test.txt"), str(out))
    assert len(rows) == 4
    assert not (out / "train.txt").exists() or read_datalist(str(out / "train.txt"), str(out)) == []
