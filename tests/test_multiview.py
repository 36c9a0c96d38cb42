"""synth_300wlp --views K: multi-view groups, their datalists, splits, shards, and the parsing stage on them."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import run_named
from stage_sources import run_recipe
from test_runner_shards import outputs_digest

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_datalist, read_mat, write_datalist, write_image
from face3d_data.io.parsing import load_group, parsing_path, read_label_map, read_multiview, write_multiview
from face3d_data.morphable import builtin_model
from face3d_data.parsing import CLASSES
from face3d_data.w300lp import project, read_labels, read_pts_mat, write_labels
from face3d_data.w300lp.multiview import (
    complete_groups,
    group_coefficients,
    parse_view_key,
    view_key,
    view_pose,
    view_yaw_interval,
)
from face3d_data.w300lp.synth import PoseDistribution, identity_rng, identity_split, sample_coefficients, synthesize
from pipelines.core import item_seed

SIZE = 96
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def model():
    return builtin_model()


@pytest.fixture(scope="module")
def mv(tmp_path_factory):
    """A 4-group, 3-view synthetic set and the parsing stage's maps of it."""
    base = tmp_path_factory.mktemp("multiview")
    data, maps = base / "synth", base / "parsing"
    summary = run_named("synth_300wlp", data, count=4, views=3, image_size=SIZE)
    assert summary.failed == 0 and summary.processed == 12
    parsed = run_named("parsing", maps, data_root=str(data))
    assert parsed.failed == 0 and parsed.processed == 12
    groups = [g for split in SPLITS for g in read_multiview(data / f"multiview_{split}.txt", data, views=3,
                                                            labels=True)]
    return {"data": data, "maps": maps, "groups": groups}


def _key(path, root):
    return os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")


# ------------------------------------------------------------------------------------ the groups
def test_views_share_the_group_coefficients_and_differ_in_pose(mv, model):
    groups = mv["groups"]
    assert [[_key(img, mv["data"]) for img, _ in g] for g in groups] == \
        [[f"synth_{g:06d}_v{v}" for v in range(3)] for g in range(4)]
    shapes = []
    for number, group in enumerate(groups):
        labels = [read_labels(mat) for _, mat in group]
        raw = [read_mat(mat) for _, mat in group]
        for lab in labels[1:]:
            np.testing.assert_array_equal(lab.shape_para, labels[0].shape_para)
            np.testing.assert_array_equal(lab.exp_para, labels[0].exp_para)
            np.testing.assert_array_equal(lab.tex_para, labels[0].tex_para)
        # the shared coefficients are those of (run seed 0, group) alone
        expected = group_coefficients(model, 0, number)
        for part, got in (("shape", labels[0].shape_para), ("exp", labels[0].exp_para), ("tex", labels[0].tex_para)):
            np.testing.assert_array_equal(got, expected[part].astype(np.float32))
        assert np.abs(labels[0].exp_para).max() > 0  # an expression, not the neutral face
        # pose, lighting and background differ per view
        yaws = [np.rad2deg(float(lab.pose_para[1])) for lab in labels]
        assert min(abs(a - b) for i, a in enumerate(yaws) for b in yaws[i + 1:]) > 1e-3
        assert abs(yaws[0]) <= 10 + 1e-4 and -90 - 1e-4 <= yaws[1] <= 1e-4 and -1e-4 <= yaws[2] <= 90 + 1e-4
        sh = [np.asarray(r["SH_Para"]) for r in raw]
        assert not np.array_equal(sh[0], sh[1]) and not np.array_equal(sh[1], sh[2])
        shapes.append(labels[0].shape_para)
    assert not any(np.array_equal(shapes[0], s) for s in shapes[1:])  # every group its own identity


def test_group_labels_reproject_to_each_views_landmarks(mv, model):
    """The group's shared coefficients with each view's Pose_Para give that view's landmarks (the
    .mat's pt2d and landmarks/<name>_pts.mat), and those fall on the parts the parsing stage drew."""
    data = mv["data"]
    for group in mv["groups"]:
        first = read_labels(group[0][1])
        vertices = model.vertices(first.shape_para, first.exp_para)
        for image, mat in group:
            lab = read_labels(mat)
            pts = project(vertices[model.landmarks], lab.pose_para, (SIZE, SIZE))[:, :2]
            np.testing.assert_allclose(pts, lab.pt2d, atol=1e-4)
            key = _key(image, data)
            _, pts_3d = read_pts_mat(data / "landmarks" / f"{key}_pts.mat")
            np.testing.assert_allclose(pts_3d, pts, atol=1e-4)
            labels = read_label_map(parsing_path(mv["maps"], key))
            tip = np.round(pts[30]).astype(int)  # landmark 30: the nose tip (on the silhouette in profile)
            yaw = np.rad2deg(float(lab.pose_para[1]))
            r = 0 if abs(yaw) < 45 else 2
            near = labels[tip[1] - r:tip[1] + r + 1, tip[0] - r:tip[0] + r + 1]
            assert (near == CLASSES["nose"]).any(), (key, yaw)
            inside = np.round(pts).astype(int).clip(0, SIZE - 1)
            on_face = labels[inside[17:, 1], inside[17:, 0]] != CLASSES["background"]  # jaw 0-16: on the rim
            assert on_face.all() if abs(yaw) < 30 else on_face.mean() > 0.8, (key, yaw)


def test_load_group_reads_views_labels_and_parsing_maps(mv):
    for group in mv["groups"]:
        batch = load_group(group, parsing_dir=mv["maps"], data_root=mv["data"])
        assert batch["images"].shape == (3, SIZE, SIZE, 3) and batch["parsing"].shape == (3, SIZE, SIZE)
        assert batch["mat_paths"] == [mat for _, mat in group]
        assert batch["keys"] == [_key(img, mv["data"]) for img, _ in group]
        for v, key in enumerate(batch["keys"]):
            np.testing.assert_array_equal(batch["parsing"][v], read_label_map(parsing_path(mv["maps"], key)))
        # the same group read as image paths only gives the same arrays
        plain = load_group([img for img, _ in group], parsing_dir=mv["maps"], data_root=mv["data"])
        np.testing.assert_array_equal(plain["images"], batch["images"])
        assert plain["mat_paths"] == batch["mat_paths"]


def test_identity_splits_keep_groups_together(tmp_path):
    run_named("synth_300wlp", tmp_path, count=16, views=2, image_size=32, split=[0.34, 0.33, 0.33])
    where = {}
    for split in SPLITS:
        for image, _mat in read_datalist(tmp_path / f"{split}.txt", tmp_path, columns=2):
            group, view = parse_view_key(_key(image, tmp_path))
            where.setdefault(group, set()).add(split)
    assert sorted(where) == list(range(16)) and all(len(s) == 1 for s in where.values())
    assert len(set().union(*where.values())) > 1  # not all in one split
    listed = {}
    for split in SPLITS:
        for group in read_multiview(tmp_path / f"multiview_{split}.txt", tmp_path, views=2, labels=True):
            numbers = {parse_view_key(_key(img, tmp_path))[0] for img, _ in group}
            assert len(numbers) == 1
            (number,) = numbers
            assert number not in listed
            listed[number] = split
            assert [parse_view_key(_key(img, tmp_path))[1] for img, _ in group] == [0, 1]
            assert [os.path.splitext(m)[0] for _, m in group] == [os.path.splitext(i)[0] for i, _ in group]
    assert listed == {g: next(iter(s)) for g, s in where.items()}
    assert listed == {g: identity_split(g, 0, [0.34, 0.33, 0.33]) for g in range(16)}


# ------------------------------------------------------------------------------ datalist format
def test_multiview_datalist_round_trip(tmp_path):
    root = tmp_path / "data set"
    names = [["a b/x_v0", "a b/x_v1"], ["100%/y\tz_v0", "100%/y\tz_v1"], ["é\u3000ü/w_v0", "é\u3000ü/w_v1"]]
    groups = [[(str(root / (n + ".jpg")), str(root / (n + ".mat"))) for n in g] for g in names]
    listing = tmp_path / "multiview_train.txt"
    assert write_multiview(listing, groups, root) == 3
    text = listing.read_text(encoding="utf-8")
    assert "a%20b/x_v0.jpg a%20b/x_v0.mat a%20b/x_v1.jpg" in text and "100%25/y%09z_v0.jpg" in text
    assert len(text.splitlines()) == 3 and all(len(line.split(" ")) == 4 for line in text.splitlines())
    # the same bytes as the plain datalist writer given the flattened rows
    write_datalist(tmp_path / "flat.txt", [[p for view in g for p in view] for g in groups], root)
    assert (tmp_path / "flat.txt").read_bytes() == listing.read_bytes()
    back = read_multiview(listing, root, views=2, labels=True)
    assert [[tuple(os.path.normpath(p) for p in v) for v in g] for g in back] == \
        [[tuple(os.path.normpath(p) for p in v) for v in g] for g in groups]
    images = read_multiview(listing, root)
    assert [tuple(os.path.normpath(p) for p in g) for g in images] == \
        [tuple(os.path.normpath(v[0]) for v in g) for g in groups]
    with pytest.raises(InputError, match="expected 3 view"):
        read_multiview(listing, root, views=3)


def test_multiview_reader_takes_image_only_lists_and_rejects_mixed_ones(tmp_path):
    images = [tmp_path / f"s_v{v}.jpg" for v in range(3)]
    write_datalist(tmp_path / "plain.txt", [images], tmp_path)
    (pairs,) = read_multiview(tmp_path / "plain.txt", tmp_path, views=3, labels=True)
    assert [(os.path.basename(i), os.path.basename(m)) for i, m in pairs] == \
        [(f"s_v{v}.jpg", f"s_v{v}.mat") for v in range(3)]
    (tmp_path / "mixed.txt").write_text("a.jpg b.jpg c.mat\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        read_multiview(tmp_path / "mixed.txt", tmp_path)
    (tmp_path / "uneven.txt").write_text("a.jpg a.mat b.jpg b.mat\nc.jpg c.mat\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        read_multiview(tmp_path / "uneven.txt", tmp_path)
    with pytest.raises(ValueError, match="same number of views"):
        write_multiview(tmp_path / "bad.txt", [[("a.jpg", "a.mat")], [("b.jpg", "b.mat"), ("c.jpg", "c.mat")]],
                        tmp_path)


# -------------------------------------------------------------------------------- pose sampling
def test_view_yaw_intervals_tile_the_range():
    assert view_yaw_interval(0, 1, 70) == (-70, 70)
    assert view_yaw_interval(0, 4, 90, 10) == (-10, 10)
    assert view_yaw_interval(0, 4, 5, 10) == (-5, 5)  # capped at the yaw range
    bins = [view_yaw_interval(v, 5, 90) for v in range(1, 5)]
    np.testing.assert_allclose(bins, [(-90, -45), (-45, 0), (0, 45), (45, 90)])
    with pytest.raises(ValueError):
        view_yaw_interval(3, 3, 90)
    base = PoseDistribution(yaw_range_deg=60, pitch_std_deg=12, roll_std_deg=8)
    assert view_pose(base, 0, 1) is base
    rng = np.random.default_rng(4)
    for view in range(4):
        pose = view_pose(base, view, 4, frontal_yaw_deg=15)
        low, high = view_yaw_interval(view, 4, 60, 15)
        angles = np.rad2deg(np.array([pose.sample(rng, 1.0, np.zeros(3), 128)[:3] for _ in range(200)]))
        assert np.all((angles[:, 1] >= low - 1e-4) & (angles[:, 1] <= high + 1e-4))
        assert angles[:, 1].max() - angles[:, 1].min() > 0.8 * (high - low)  # spread over the bin
        pitch_cap = 2.5 * 12 * (0.5 if view == 0 else 1.0)
        assert np.abs(angles[:, 0]).max() <= pitch_cap + 1e-3
        assert np.abs(angles[:, 0]).max() > 0.5 * pitch_cap


def test_complete_groups_orders_views_numerically_and_reports_gaps():
    keys = [view_key("p_x", g, v) for g in (2, 0) for v in range(12)]
    keys.remove(view_key("p_x", 2, 7))
    groups, incomplete = complete_groups(keys, 12)
    assert groups == [[f"p_x_000000_v{v}" for v in range(12)]] and incomplete == [2]
    assert parse_view_key("sub/p_x_000123_v10") == (123, 10)
    with pytest.raises(ValueError):
        parse_view_key("synth_000123")


# ------------------------------------------------------------------------------ stage behaviour
def test_views_1_is_the_single_view_synthesis_of_before(tmp_path, model):
    """views: 1 keeps the names, files and bytes of the single-view recipe: each sample's labels
    are synthesize() with the identity's shape/texture and the item's own generator."""
    run_named("synth_300wlp", tmp_path, count=3, image_size=64, views_per_identity=2, views=1)
    names = sorted(os.listdir(tmp_path))
    assert not [n for n in names if n.startswith("multiview_") or "_v" in n]
    assert [n for n in names if n.endswith(".jpg")] == [f"synth_{i:06d}.jpg" for i in range(3)]
    for i in range(3):
        key = f"synth_{i:06d}"
        id_rng = identity_rng(0, i // 2)
        shape = sample_coefficients(model, id_rng, 1.0, "shape")
        tex = sample_coefficients(model, id_rng, 1.0, "tex")
        sample = synthesize(model, np.random.default_rng(item_seed(0, "synth_300wlp", key)), 64,
                            pose=PoseDistribution(90, 12, 8, (130.0, 200.0), 0.06), shape_para=shape,
                            tex_para=tex)
        write_labels(tmp_path / "expected.mat", sample.labels)
        assert (tmp_path / "expected.mat").read_bytes() == (tmp_path / f"{key}.mat").read_bytes()
    assert "views" not in (tmp_path / "stats.json").read_text()


def test_sharded_and_resumed_multiview_runs_equal_a_single_run(tmp_path):
    options = {"count": 4, "views": 3, "image_size": 48}
    single = tmp_path / "single"
    assert run_recipe("synth_300wlp", single, options).failed == 0
    reference = outputs_digest(single)
    assert {f"multiview_{s}.txt" for s in SPLITS} <= set(reference)
    for order in ((0, 1, 2), (2, 0, 1)):
        out = tmp_path / ("sharded_" + "".join(map(str, order)))
        keys = []
        for i in order:
            summary = run_recipe("synth_300wlp", out, options, shard=(i, 3))
            keys.append({r["key"] for r in summary.records})
        # shards split groups across themselves (views are the items), yet the folder is the same
        assert sum(len(k) for k in keys) == 12 and all(keys)
        assert outputs_digest(out) == reference, order
    # resume: an interrupted run (first 5 views) completed later equals the single run
    resumed = tmp_path / "resumed"
    from pipelines.core import RunOptions, build_config, run_stage
    from pipelines.registry import stage_class

    cfg = build_config("synth_300wlp", explicit=options)
    run_stage(stage_class("synth_300wlp"), RunOptions(out=str(resumed), jobs=1, backend="threading",
                                                      quiet=True, limit=5), cfg=cfg)
    assert outputs_digest(resumed) != reference
    summary = run_recipe("synth_300wlp", resumed, options)
    assert summary.skipped == 5 and summary.processed == 7
    assert outputs_digest(resumed) == reference
    # a group's views do not depend on how many groups the run makes
    fewer = tmp_path / "fewer"
    run_recipe("synth_300wlp", fewer, {**options, "count": 2})
    small = outputs_digest(fewer)
    assert len([p for p in small if p.startswith("synth_")]) == 2 * 3 * 2  # .jpg + .mat of 2 groups x 3 views
    for path, digest in small.items():
        if os.path.basename(path).startswith("synth_"):
            assert reference[path] == digest, path


def test_a_failed_view_drops_its_group_from_the_multiview_lists(tmp_path):
    backgrounds = tmp_path / "bg"
    backgrounds.mkdir()
    write_image(backgrounds / "a.png", np.full((40, 40, 3), 90, np.uint8))
    (backgrounds / "b.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    summary = run_named("synth_300wlp", out, count=4, views=2, image_size=32, backgrounds=str(backgrounds))
    failed = {r["key"] for r in summary.records if r.get("status") != "ok"}
    assert failed and summary.failed == len(failed) < 8
    listed = {_key(img, out) for split in SPLITS
              for g in read_multiview(out / f"multiview_{split}.txt", out, views=2) for img in g}
    bad_groups = {parse_view_key(k)[0] for k in failed}
    assert listed == {view_key("synth", g, v) for g in range(4) if g not in bad_groups for v in range(2)}
    import json

    assert json.loads((out / "stats.json").read_text())["incomplete_groups"] == sorted(bad_groups)


def test_bad_view_options_rejected(tmp_path):
    with pytest.raises(ConfigError, match="views"):
        run_named("synth_300wlp", tmp_path, count=1, views=0)
    with pytest.raises(ConfigError, match="frontal_yaw_deg"):
        run_named("synth_300wlp", tmp_path, count=1, views=2, frontal_yaw_deg=120)
