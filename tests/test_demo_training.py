"""The demo ends with a short CPU training run: posmaps at 64², a width-4 PRNet, eval and predict.

The stage chain before it is cut to its first step (synthetic faces) so that the test stays fast;
the training step is the one ``python -m pipelines.run demo`` runs.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch

import pipelines.demo as demo
from face3d_data.io import load_npy, read_datalist, read_image
from face3d_data.io.landmarks import read_landmarks
from face3d_data.posmap import decode_landmarks
from face3d_data.train.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    steps = [("synth_300wlp", "synth", {"count": 16})]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(demo, "DEMO_STEPS", steps)
        code = demo.run_demo(str(out), jobs=1, quiet=True)
    return str(out), code


def _lists(out):
    pos = os.path.join(out, "train", "posmap64")
    return pos, {s: os.path.join(pos, "datalist", f"posmap_{s}.txt") for s in ("train", "val", "test")}


def test_demo_ends_with_training_checkpoint_and_metrics(demo_out):
    out, code = demo_out
    assert code == 0
    pos, lists = _lists(out)
    rows = {s: read_datalist(p, pos, columns=2) for s, p in lists.items()}
    assert rows["train"] and rows["val"] and rows["test"]
    assert not {r[0] for r in rows["test"]} & {r[0] for r in rows["train"]}
    run = os.path.join(out, "train", "prnet")
    state = load_checkpoint(os.path.join(run, "checkpoints", "last.pt"))
    steps = demo.DEMO_TRAIN["max_steps"]
    assert state["task"] == "prnet" and state["step"] == steps
    assert state["config"]["width"] == demo.DEMO_TRAIN["width"]
    assert os.path.isfile(os.path.join(run, "checkpoints", "best.pt"))
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    train_rows = [r for r in metrics if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(2, steps + 1, 2))
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in train_rows)
    assert any("val_nme_2d" in r and math.isfinite(r["val_nme_2d"]) for r in metrics)
    preview = read_image(os.path.join(run, "previews", f"step_{steps:07d}.png"))
    r = demo.DEMO_TRAIN["resolution"]
    assert preview.shape[1] == 3 * r and preview.shape[0] % r == 0


def test_demo_eval_matches_an_independent_nme(demo_out):
    """eval's nme_2d equals the NME recomputed here from the checkpoint with the numpy decoder."""
    out, _ = demo_out
    pos, lists = _lists(out)
    with open(os.path.join(out, "train", "eval", "metrics.json"), encoding="utf-8") as f:
        report = json.load(f)
    test_rows = read_datalist(lists["test"], pos, columns=2)
    assert report["samples"] == len(test_rows) and report["dropped"] == 0
    assert "sqrt(w*h)" in report["normaliser"]
    for key in ("nme_2d", "nme_3d", "dense_nme_2d", "dense_nme_3d"):
        assert math.isfinite(report[key]) and 0 < report[key] < 2, (key, report[key])
    assert "nme_2d_by_yaw" in report       # the demo passes the synthetic labels as yaw_root
    assert os.path.isfile(os.path.join(out, "train", "eval", "worst_cases.jpg"))

    task, model, _ = model_from_checkpoint(os.path.join(out, "train", "prnet", "checkpoints", "last.pt"))
    model.eval()
    kw = task.uv().kpt_weights
    errors = []
    for image_path, label_path in test_rows:
        image = read_image(image_path).astype(np.float32) / 255.0
        with torch.no_grad():
            pred = model(torch.from_numpy(image.transpose(2, 0, 1))[None])[0].permute(1, 2, 0).numpy()
        gt = decode_landmarks(load_npy(label_path), kw)[:, :2].astype(np.float64)
        p = decode_landmarks(pred, kw)[:, :2].astype(np.float64)
        w, h = gt.max(0) - gt.min(0)
        errors.append(np.linalg.norm(p - gt, axis=1).mean() / math.sqrt(w * h))
    assert report["nme_2d"] == pytest.approx(float(np.mean(errors)), rel=1e-4)


def test_demo_predict_writes_maps_landmarks_meshes_and_sheet(demo_out):
    out, _ = demo_out
    pos, lists = _lists(out)
    pred_dir = os.path.join(out, "train", "predict")
    stems = [os.path.splitext(os.path.basename(img))[0] for img, _ in read_datalist(lists["test"], pos, columns=2)]
    assert stems
    kw = load_checkpoint(os.path.join(out, "train", "prnet", "checkpoints", "last.pt"))
    from face3d_data.train.uv_data import UVData
    kw = UVData.from_state(kw["extras"]["uv"]).kpt_weights
    r = demo.DEMO_TRAIN["resolution"]
    for stem in stems:
        h, w = read_image(os.path.join(out, "train", "predict_input", f"{stem}.jpg")).shape[:2]
        posmap = load_npy(os.path.join(pred_dir, f"{stem}.npy"))
        assert posmap.shape == (r, r, 3) and posmap.dtype == np.float32 and np.isfinite(posmap).all()
        landmarks = read_landmarks(os.path.join(pred_dir, "landmarks", f"{stem}.txt"))
        assert landmarks.shape == (68, 2)
        # the landmark file is the exact decoder applied to the written map (image frame)
        np.testing.assert_allclose(landmarks, decode_landmarks(posmap, kw)[:, :2], atol=1e-3)
        # sigmoid output scaled by 1.1 R, mapped to the image frame: inside [-0.5, 1.1 W]
        assert landmarks.min() >= -0.5 and landmarks[:, 0].max() <= 1.1 * w and landmarks[:, 1].max() <= 1.1 * h
        with open(os.path.join(pred_dir, f"{stem}.obj"), encoding="utf-8") as f:
            kinds = [line.split(" ", 1)[0] for line in f]
        assert kinds.count("v") > 100 and kinds.count("f") > 100
    sheet = read_image(os.path.join(pred_dir, "contact_sheet.jpg"))
    assert sheet.ndim == 3 and sheet.shape[0] > 0
