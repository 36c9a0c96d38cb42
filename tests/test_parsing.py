"""Parsing maps: classes sit where their landmarks are, background = uncovered pixels, the stage,
its errors, and the readers of face3d_data.io.parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import load_npy, write_datalist, write_image
from face3d_data.io.parsing import (
    load_group,
    parsing_path,
    read_class_maps,
    read_label_map,
    read_multiview,
)
from face3d_data.morphable import MorphableModel, load_model
from face3d_data.morphable.testing import random_model
from face3d_data.parsing import (
    CLASSES,
    N_CLASSES,
    PartLabeller,
    face_box,
    label_map,
    landmark_vertex_classes,
    one_hot,
    points_in_polygon,
    preview_tile,
    soft_label_map,
)
from face3d_data.render import rasterize
from face3d_data.w300lp import labels_to_mat, project, write_labels
from face3d_data.w300lp.synth import PoseDistribution, sample_coefficients
from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class

SIZE = 160
EYES = {"left_eye": np.arange(36, 42), "right_eye": np.arange(42, 48)}
MOUTH = np.arange(48, 60)
LIPS = ("upper_lip", "lower_lip", "inner_mouth")


@pytest.fixture(scope="module")
def model():
    return load_model("builtin")


def _faces(model, n, yaw_deg, seed):
    """n synthetic faces (identity, expression, pose) with yaw uniform in ±yaw_deg."""
    rng = np.random.default_rng(seed)
    lm3 = model.mean[model.landmarks].astype(np.float64)
    poses = PoseDistribution(yaw_range_deg=yaw_deg, pitch_std_deg=6.0 if yaw_deg else 0.0,
                             roll_std_deg=5.0 if yaw_deg else 0.0, face_width_px=(110, 130), center_jitter=0)
    faces = []
    for _ in range(n):
        shape = sample_coefficients(model, rng, 1.0, "shape").astype(np.float32)
        exp = sample_coefficients(model, rng, 0.5, "exp").astype(np.float32)
        pose = poses.sample(rng, float(np.ptp(lm3[:17, 0])), lm3.mean(0), SIZE)
        faces.append((shape, exp, pose))
    return faces


def _write_dataset(root, faces, prefix="face"):
    keys = []
    for i, (shape, exp, pose) in enumerate(faces):
        key = f"SET/{prefix}_{i:03d}"
        os.makedirs(os.path.join(root, "SET"), exist_ok=True)
        write_image(os.path.join(root, key + ".jpg"), np.full((SIZE, SIZE, 3), 90, np.uint8))
        write_labels(os.path.join(root, key + ".mat"), labels_to_mat(pose, shape, exp))
        keys.append(key)
    return keys


def _run(out, **explicit):
    cfg = build_config("parsing", explicit=explicit)
    return run_stage(stage_class("parsing"), RunOptions(out=str(out), jobs=1, quiet=True, backend="threading"),
                     cfg=cfg)


def _projected(model, face):
    shape, exp, pose = face
    return project(model.vertices(shape, exp), pose, (SIZE, SIZE))


def _max_edge(projected, triangles, ids):
    """Longest projected (x, y) edge of each triangle in ``ids``."""
    corners = projected[triangles[ids]][..., :2]
    return np.linalg.norm(corners - np.roll(corners, 1, axis=-2), axis=-1).max(axis=-1)


def _distance_outside(polygon, points):
    """Distance of each point outside ``polygon`` (0 inside), by OpenCV (independent of our test)."""
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    d = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])
    return np.maximum(-d, 0.0)


@pytest.fixture(scope="module")
def frontal(model, tmp_path_factory):
    """Faces with zero rotation (the landmark polygons then map exactly into the image)."""
    root = tmp_path_factory.mktemp("frontal")
    faces = _faces(model, 3, 0.0, seed=11)
    keys = _write_dataset(str(root / "data"), faces)
    summary = _run(root / "out", data_root=str(root / "data"), onehot=True, soft=True, supersample=3)
    assert summary.failed == 0 and summary.processed == 3
    return {"root": root, "faces": faces, "keys": keys}


@pytest.fixture(scope="module")
def turned(model, tmp_path_factory):
    root = tmp_path_factory.mktemp("turned")
    faces = _faces(model, 4, 30.0, seed=12)
    keys = _write_dataset(str(root / "data"), faces)
    assert _run(root / "out", data_root=str(root / "data")).failed == 0
    return {"root": root, "faces": faces, "keys": keys}


def _check_parts_inside(model, data, slack):
    for key, face in zip(data["keys"], data["faces"]):
        labels = read_label_map(parsing_path(data["root"] / "out", key))
        projected = _projected(model, face)
        lm = projected[model.landmarks, :2]
        raster = rasterize(projected, model.triangles, SIZE, SIZE)
        parts = [(name, lm[idx], (labels == CLASSES[name])) for name, idx in EYES.items()]
        parts.append(("lips", lm[MOUTH], np.isin(labels, [CLASSES[c] for c in LIPS])))
        for name, polygon, mask in parts:
            ys, xs = np.nonzero(mask)
            assert len(xs) > 0, (key, name)
            # a labelled pixel's nearest vertex is inside the part: it lies within one edge of it
            bound = _max_edge(projected, model.triangles, raster.triangle_id[ys, xs]) + slack
            outside = _distance_outside(polygon, np.stack([xs, ys], 1))
            assert np.all(outside <= bound), (key, name, float((outside - bound).max()))
        for name, idx in EYES.items():  # an open eye's polygon is mostly labelled as that eye
            polygon = lm[idx].astype(np.float32)
            area = cv2.contourArea(polygon)
            if area >= 25:
                gy, gx = np.mgrid[:SIZE, :SIZE]
                inside = points_in_polygon(np.stack([gx.ravel(), gy.ravel()], 1), polygon).reshape(SIZE, SIZE)
                assert (labels[inside] == CLASSES[name]).mean() > 0.5, (key, name, area)


def test_eye_and_lip_pixels_lie_in_their_landmark_polygons(model, frontal):
    _check_parts_inside(model, frontal, slack=1e-6)


def test_parts_follow_their_landmarks_in_turned_views(model, turned):
    # turned faces: a vertex inside a part in the model's frontal frame may project up to a pixel
    # beyond the projected landmark polygon (the surface is not flat): half a pixel of slack
    _check_parts_inside(model, turned, slack=0.5)


def test_background_is_exactly_the_uncovered_pixels(model, frontal, turned):
    for data in (frontal, turned):
        for key, face in zip(data["keys"], data["faces"]):
            labels = read_label_map(parsing_path(data["root"] / "out", key))
            raster = rasterize(_projected(model, face), model.triangles, SIZE, SIZE)
            np.testing.assert_array_equal(labels == 0, raster.triangle_id < 0)
            assert labels[raster.triangle_id >= 0].min() >= 1


def test_classes_are_exclusive_and_maps_agree(model, frontal):
    for key in frontal["keys"]:
        out = frontal["root"] / "out"
        labels = read_label_map(parsing_path(out, key))
        onehot = read_class_maps(parsing_path(out, key, "onehot"))
        assert onehot.dtype == np.uint8 and onehot.shape == (SIZE, SIZE, N_CLASSES)
        np.testing.assert_array_equal(onehot.sum(-1), 1)              # exactly one class per pixel
        np.testing.assert_array_equal(onehot.argmax(-1), labels)
        soft = read_class_maps(parsing_path(out, key, "soft"))
        np.testing.assert_allclose(soft.sum(-1), 1, atol=1e-6)
        # soft shares are multiples of 1/9 (3×3 samples); inside a class region they are pure
        np.testing.assert_allclose(soft * 9, np.round(soft * 9), atol=1e-4)
        interior = cv2.erode((labels == CLASSES["skin"]).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert np.all(soft[interior, CLASSES["skin"]] == 1)
        colour = cv2.cvtColor(cv2.imread(parsing_path(out, key, "color")), cv2.COLOR_BGR2RGB)
        from face3d_data.parsing import COLORS
        np.testing.assert_array_equal(colour, COLORS[labels])


def test_soft_map_with_one_sample_is_the_one_hot(model):
    face = _faces(model, 1, 20.0, seed=3)[0]
    projected = _projected(model, face)
    classes = PartLabeller(model).vertex_classes(model.vertices(face[0], face[1]))
    hard = label_map(projected, model.triangles, classes, SIZE, SIZE)
    soft = soft_label_map(projected, model.triangles, classes, SIZE, SIZE, supersample=1)
    np.testing.assert_array_equal(soft, one_hot(hard).astype(np.float32))


def test_stage_writes_class_table_and_counts(frontal):
    out = frontal["root"] / "out"
    table = json.loads((out / "parsing_classes.json").read_text())
    assert [c["name"] for c in table["classes"]][:2] == ["background", "skin"]
    assert {c["name"]: c["id"] for c in table["classes"]} == CLASSES
    import pandas as pd
    manifest = pd.read_parquet(out / "manifest.parquet")
    for row in manifest.itertuples():
        labels = read_label_map(parsing_path(out, row.key))
        assert row.px_left_eye == (labels == CLASSES["left_eye"]).sum()
        assert row.px_background == (labels == 0).sum()
    assert (out / "preview.png").is_file()


def test_left_is_the_image_left(model):
    """In a frontal image the left eye (iBUG 36-41, FIVE_POINT_NAMES' left_eye) is on the image's left."""
    face = _faces(model, 1, 0.0, seed=5)[0]
    projected = _projected(model, face)
    classes = PartLabeller(model).vertex_classes(model.vertices(face[0], face[1]))
    labels = label_map(projected, model.triangles, classes, SIZE, SIZE)
    x_left = np.nonzero(labels == CLASSES["left_eye"])[1].mean()
    x_right = np.nonzero(labels == CLASSES["right_eye"])[1].mean()
    assert x_left < SIZE / 2 < x_right


def test_landmark_classes_work_without_regions(model):
    plain = MorphableModel(model.mean, model.shape_basis, model.shape_std, model.exp_basis, model.exp_std,
                           triangles=model.triangles, landmarks=model.landmarks)
    with pytest.raises(ConfigError, match="no region labels"):
        PartLabeller(plain, "model")
    classes = PartLabeller(plain, "landmarks").vertex_classes()
    counts = np.bincount(classes, minlength=N_CLASSES)
    assert counts[0] == 0 and np.all(counts[1:] > 0)  # every part present on the mean face
    # neck = below the jaw line: every neck vertex is lower than the lowest jaw landmark's neighbours
    jaw_y = model.mean[model.landmarks[:17], 1]
    assert model.mean[classes == CLASSES["neck"], 1].max() <= jaw_y.max()


def test_class_file_round_trip(model, frontal, tmp_path):
    classes = PartLabeller(model).vertex_classes()
    for path in (tmp_path / "classes.npy", tmp_path / "classes.txt"):
        if path.suffix == ".npy":
            np.save(path, classes.astype(np.int64))
        else:
            path.write_text("".join(f"{c}\n" for c in classes))
        labeller = PartLabeller(model, str(path))
        np.testing.assert_array_equal(labeller.vertex_classes(), classes)
    out = tmp_path / "out"
    assert _run(out, data_root=str(frontal["root"] / "data"), classes=str(tmp_path / "classes.npy")).failed == 0
    key, face = frontal["keys"][0], frontal["faces"][0]
    expected = label_map(_projected(model, face), model.triangles, classes, SIZE, SIZE)
    np.testing.assert_array_equal(read_label_map(parsing_path(out, key)), expected)


@pytest.mark.parametrize("content, message", [
    (np.full(10, 1), "10 class ids"),
    (None, "1..10"),
])
def test_bad_class_file(model, tmp_path, content, message):
    path = tmp_path / "bad.npy"
    np.save(path, content if content is not None else np.zeros(model.n_vertices, np.int64))
    with pytest.raises(InputError, match=message):
        PartLabeller(model, str(path))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.run", "parsing", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_bad_model_is_exit_2(frontal, tmp_path, capsys):
    from pipelines.run import main

    data = str(frontal["root"] / "data")
    no_regions = tmp_path / "plain.npz"
    m = random_model(300, 3, 2, seed=0)
    MorphableModel(
        m.mean, m.shape_basis, m.shape_std, m.exp_basis, m.exp_std, triangles=m.triangles, landmarks=m.landmarks
    ).save(str(no_regions))  # triangles, no regions
    bad_classes = tmp_path / "short.txt"
    bad_classes.write_text("1\n2\n")
    # the real command line once (exit status, one line on stderr, no traceback) ...
    result = _cli("--data-root", data, "--out", str(tmp_path / "o"), "--model", str(tmp_path / "missing.npz"))
    assert result.returncode == 2, result.stderr
    assert "missing.npz" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    # ... and the same entry point in-process for the other bad models
    cases = [(["--model", str(no_regions)], "no region labels"),
             (["--set", f"classes={bad_classes}"], "2 class ids")]
    for args, message in cases:
        code = main(["parsing", "--data-root", data, "--out", str(tmp_path / "o"), "--quiet", *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o" / "SET").exists()


def test_points_in_polygon_against_known_shapes():
    square = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], float)
    notch = np.array([[0, 0], [6, 0], [6, 6], [3, 2], [0, 6]], float)  # concave top
    pts = np.array([[2, 2], [5, 5], [-1, 2], [1, 5], [3, 3.5], [3, 1], [5.5, 5]])
    np.testing.assert_array_equal(points_in_polygon(pts, square), [True, False, False, False, True, True, False])
    np.testing.assert_array_equal(points_in_polygon(pts, notch), [True, False, False, False, False, True, True])


def test_landmark_vertex_classes_follow_an_open_mouth(model):
    """Opening the inner lips moves vertices into the inner-mouth class."""
    v = model.mean.astype(np.float64).copy()
    closed = landmark_vertex_classes(v, model.landmarks)
    lm = model.landmarks
    v_open = v.copy()
    v_open[lm[65:68], 1] -= 6000.0   # inner lower lip landmarks 6 mm down
    opened = landmark_vertex_classes(v_open, lm)
    assert (opened == CLASSES["inner_mouth"]).sum() > (closed == CLASSES["inner_mouth"]).sum() + 5
    inner = v_open[lm[60:68], :2]
    members = v_open[opened == CLASSES["inner_mouth"], :2]
    assert np.all(_distance_outside(inner, members) == 0)


# ------------------------------------------------------------------------------------- readers
def test_multiview_datalist_and_group_loading(model, frontal, tmp_path):
    data = frontal["root"] / "data"
    images = [data / f"{k}.jpg" for k in frontal["keys"]]
    listing = tmp_path / "multiview_train.txt"
    write_datalist(listing, [images[:3]], data)
    groups = read_multiview(listing, str(data), views=3)
    assert [tuple(os.path.normpath(p) for p in g) for g in groups] == [tuple(str(p) for p in images[:3])]
    with pytest.raises(InputError):
        read_multiview(listing, str(data), views=2)
    group = load_group(groups[0], parsing_dir=frontal["root"] / "out", data_root=data)
    assert group["images"].shape == (3, SIZE, SIZE, 3) and group["parsing"].shape == (3, SIZE, SIZE)
    assert group["keys"] == frontal["keys"][:3]
    np.testing.assert_array_equal(group["parsing"][1], read_label_map(parsing_path(frontal["root"] / "out",
                                                                                  frontal["keys"][1])))
    assert [os.path.basename(m) for m in group["mat_paths"]] == [os.path.basename(k) + ".mat" for k in frontal["keys"]]


def test_readers_reject_bad_maps(tmp_path):
    rgb = tmp_path / "rgb_parsing.png"
    write_image(rgb, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="single-channel"):
        read_label_map(rgb)
    high = tmp_path / "high_parsing.png"
    write_image(high, np.full((4, 4), 200, np.uint8))
    with pytest.raises(InputError, match="class id 200"):
        read_label_map(high)
    bad_soft = tmp_path / "bad_soft.npy"
    np.save(bad_soft, np.full((2, 2, N_CLASSES), 0.5, np.float32))
    with pytest.raises(InputError, match="sum to 1"):
        read_class_maps(bad_soft)
    with pytest.raises(InputError, match="not found"):
        read_label_map(tmp_path / "missing.png")
    assert load_npy  # the .npy reader used by read_class_maps is the library's


def test_preview_tile_is_cropped_to_the_face(model):
    face = _faces(model, 1, 20.0, seed=8)[0]
    projected = _projected(model, face)
    classes = PartLabeller(model).vertex_classes(model.vertices(face[0], face[1]))
    labels = label_map(projected, model.triangles, classes, SIZE, SIZE)
    x0, y0, x1, y1 = face_box(labels)
    ys, xs = np.nonzero(labels)
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert (labels[y0:y1, x0:x1] > 0).sum() == (labels > 0).sum()
    image = np.full((SIZE, SIZE, 3), 40, np.uint8)
    tile = preview_tile(image, labels, alpha=1.0, size=64)
    assert tile.shape == (128, 128, 3) and tile.dtype == np.uint8
    # the overlay (top right) shows class colours where the face is, the image elsewhere
    assert (tile[:64, 64:] != 40).any() and (tile[:64, :64] == 40).all()
    assert face_box(np.zeros((5, 7), np.uint8)) == (0, 0, 7, 5)


def test_mouth_closing_triangles_are_inner_mouth(model):
    """A BFM-like mesh: no vertex inside the open mouth, which triangles between lip vertices close."""
    from scipy.spatial import Delaunay

    lm = model.mean[model.landmarks, :2].astype(np.float64).copy()
    lm[[55, 56, 57, 58, 59, 65, 66, 67], 1] -= 9000.0  # open the mouth: lower lip 9 mm down
    lo, hi = lm.min(0) - 20000, lm.max(0) + 20000
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], 5000.0), np.arange(lo[1], hi[1], 5000.0))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    grid = grid[~points_in_polygon(grid, lm[48:60])]          # nothing inside the outer lip contour
    xy = np.concatenate([lm, grid])
    vertices = np.concatenate([xy, np.zeros((len(xy), 1))], 1).astype(np.float32)
    triangles = Delaunay(xy).simplices.astype(np.int32)
    bfm_like = MorphableModel(vertices, np.zeros((len(xy), 3, 1), np.float32), np.ones(1),
                              np.zeros((len(xy), 3, 0), np.float32), np.ones(0), triangles=triangles,
                              landmarks=np.arange(68))
    labeller = PartLabeller(bfm_like, "landmarks")
    f = 100.0 / np.ptp(xy[:, 0])
    pose = np.array([0, 0, 0, SIZE / 2 + 0.5 - f * xy[:, 0].mean(), SIZE / 2 + 0.5 - f * xy[:, 1].mean(), 0, f])
    projected = project(vertices, pose, (SIZE, SIZE))
    inner = projected[60:68, :2]
    gy_, gx_ = np.mgrid[:SIZE, :SIZE]
    pixels = np.stack([gx_.ravel(), gy_.ravel()], 1)
    contour = inner.astype(np.float32).reshape(-1, 1, 2)
    depth = np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in pixels])
    opening = (depth > 0.5).reshape(SIZE, SIZE)                    # well inside the mouth opening
    assert opening.sum() > 30
    by_corner = label_map(projected, triangles, labeller.corner_classes(), SIZE, SIZE)
    by_vertex = label_map(projected, triangles, labeller.vertex_classes(), SIZE, SIZE)
    share_corner = (by_corner[opening] == CLASSES["inner_mouth"]).mean()
    share_vertex = (by_vertex[opening] == CLASSES["inner_mouth"]).mean()
    assert share_corner > 0.95 and share_vertex < share_corner - 0.3  # the lip vertices alone cannot say it
    # outside the inner contour nothing changes
    np.testing.assert_array_equal(by_corner[depth.reshape(SIZE, SIZE) < -1.5],
                                  by_vertex[depth.reshape(SIZE, SIZE) < -1.5])
