"""PRNet training end to end on data built by the real stages (synth_300wlp + posmap at R = 64)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from face3d_data.io import load_npy, read_image, save_npy
from face3d_data.io.datalist import read_datalist
from face3d_data.posmap import decode_landmarks
from face3d_data.train.augment import AugmentConfig, augment_pair, similarity, warp_pair
from face3d_data.train.posmap_data import PosmapDataset
from face3d_data.train.prnet import (
    PRNetTask,
    decode_keypoints,
    landmark_errors,
    posmap_loss,
)
from face3d_data.train.resfcn import ResFCN, same_padding
from face3d_data.train.uv_data import load_uv_data
from pipelines.train import main as train_main

R = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 synthetic 300W-LP samples → posmap crops + labels at R = 64 (real stages, in-process)."""
    from pipelines.run import main as run_main

    root = tmp_path_factory.mktemp("prnet_data")
    synth, pos = str(root / "synth"), str(root / "pos")
    assert run_main(["synth_300wlp", "--out", synth, "--count", "16", "--jobs", "1", "--quiet",
                     "--set", "image_size=128"]) == 0
    assert run_main(["posmap", "--data-root", synth, "--out", pos, "--resolution", str(R), "--jobs", "1",
                     "--quiet"]) == 0
    return {"synth": synth, "pos": pos, "train": os.path.join(pos, "datalist", "posmap_train.txt"),
            "val": os.path.join(pos, "datalist", "posmap_val.txt")}


def small(data, out, *extra):
    return ["prnet", "--datalist", data["train"], "--out", str(out), "--batch-size", "4", "--workers", "0",
            "--device", "cpu", "--quiet", "--set", "width=4", "--check-samples", "header", *extra]


def rows(run):
    with open(os.path.join(run, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- model, loss, metrics ------------------------------------------------------------------------

def test_same_padding_follows_tensorflow_rule():
    # TF SAME: output ceil(n/s), total padding max((out-1)s + k - n, 0), the extra pixel after
    assert same_padding(256, 4, 1) == (1, 2)
    assert same_padding(256, 4, 2) == (1, 1)
    assert same_padding(255, 4, 2) == (1, 2)
    assert same_padding(64, 1, 2) == (0, 0)


def test_resfcn_layout_shapes_and_range():
    model = ResFCN(width=16, resolution=256)
    n_params = sum(p.numel() for p in model.parameters())
    assert 13.3e6 < n_params < 13.4e6  # 13.35 M for a faithful port (52 MB, reshow/PRNet-PyTorch#5)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    tconvs = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(tconvs) == 17 and len(model.encoder) == 10
    assert all(m.bias is None for m in convs + tconvs) and all(m.padding == (0, 0) for m in convs + tconvs)
    for res in (64, 96):
        net = ResFCN(width=4, resolution=res).eval()
        with torch.no_grad():
            y = net(torch.rand(2, 3, res, res))
        assert y.shape == (2, 3, res, res)
        assert float(y.min()) >= 0 and float(y.max()) <= 1.1 * res
    with pytest.raises(ValueError):
        ResFCN(4, 80)


def test_posmap_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(2, 3, 8, 8))
    w = rng.integers(0, 17, size=(8, 8)).astype(np.float64)
    d = np.sqrt(((pred - gt) ** 2).sum(1))
    ref = ((d * w).sum((1, 2)) / w.sum()).mean()
    ref_mse = ((d ** 2 * w).sum((1, 2)) / w.sum()).mean()
    t = [torch.tensor(a, dtype=torch.float32) for a in (pred, gt, w)]
    assert float(posmap_loss(*t, kind="paper")) == pytest.approx(ref, rel=1e-5)
    assert float(posmap_loss(*t, kind="mse")) == pytest.approx(ref_mse, rel=1e-5)
    assert float(posmap_loss(t[1], t[1], t[2])) < 1e-3


def test_torch_keypoint_decoder_matches_the_posmap_package_and_nme(data):
    uv = load_uv_data(os.path.join(data["pos"], "uv-data"))
    label = load_npy(read_datalist(data["train"], data["pos"], columns=2)[0][1]).astype(np.float32)
    ref = decode_landmarks(label, uv.kpt_weights)
    gt = torch.from_numpy(label.transpose(2, 0, 1))[None]
    texels = torch.from_numpy(uv.kpt_weights.texels)
    weights = torch.from_numpy(uv.kpt_weights.weights.astype(np.float32))
    np.testing.assert_allclose(decode_keypoints(gt, texels, weights)[0].numpy(), ref, atol=1e-3)
    # a prediction shifted by (1, 0) px: every 2D error is 1, so NME = 1 / sqrt(w h) of the GT box
    shifted = gt.clone()
    shifted[:, 0] += 1.0
    err = landmark_errors(shifted, gt, texels, weights, torch.from_numpy(uv.face_ind))
    box = ref[:, :2].max(0) - ref[:, :2].min(0)
    assert float(err["nme_2d"][0]) == pytest.approx(1 / np.sqrt(box[0] * box[1]), rel=1e-4)
    assert float(err["nme_3d"][0]) == pytest.approx(1 / np.sqrt(box[0] * box[1]), rel=1e-4)
    assert float(err["dense_nme_2d"][0]) == pytest.approx(1 / np.sqrt(box[0] * box[1]), rel=1e-4)


# ---- augmentation --------------------------------------------------------------------------------

def _bilinear(image, points):
    import cv2

    mx = points[:, 0].astype(np.float32)[None]
    my = points[:, 1].astype(np.float32)[None]
    return cv2.remap(image.astype(np.float32), mx, my, cv2.INTER_LINEAR)[0]


def test_augmentation_moves_image_and_label_together(data):
    uv = load_uv_data(os.path.join(data["pos"], "uv-data"))
    image_path, label_path = read_datalist(data["train"], data["pos"], columns=2)[2]
    image, label = read_image(image_path), load_npy(label_path).astype(np.float32)
    kpt = decode_landmarks(label, uv.kpt_weights)
    angle, scale, shift = 30.0, 1.1, (3.0, -2.0)
    matrix = similarity(R, angle, scale, shift)
    warped, new_label = warp_pair(image, label, matrix, scale)
    # analytic: p' = c + s Rot(θ) (p - c) + t, Rot(θ) = [[cos, sin], [-sin, cos]], z' = s z
    c = (R - 1) / 2
    t = np.radians(angle)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    expected = (kpt[:, :2] - c) @ (scale * rot).T + c + np.array(shift)
    decoded = decode_landmarks(new_label, uv.kpt_weights)
    np.testing.assert_allclose(decoded[:, :2], expected, atol=1e-3)
    np.testing.assert_allclose(decoded[:, 2], scale * kpt[:, 2], atol=1e-3)
    # the decoded landmarks sit on the same image content as before the warp
    inside = np.all((expected > 1) & (expected < R - 2), axis=1) & np.all((kpt[:, :2] > 1) & (kpt[:, :2] < R - 2), 1)
    assert inside.sum() > 20
    same = np.abs(_bilinear(warped, decoded[inside, :2]) - _bilinear(image, kpt[inside, :2])).mean()
    unmoved = np.abs(_bilinear(warped, kpt[inside, :2]) - _bilinear(image, kpt[inside, :2])).mean()
    assert same < 6 and unmoved > 3 * same


def test_dataset_augmentation_is_seeded_per_sample_and_keeps_pairs(data):
    aug = AugmentConfig(p_rotate=1, p_shift=1, p_scale=1, p_color=0, p_erase=0)
    a = PosmapDataset(data["train"], R, seed=3, augment=True, aug=aug)
    b = PosmapDataset(data["train"], R, seed=3, augment=True, aug=aug)
    s0, s1 = a[(1, 0)], b[(1, 0)]
    assert torch.equal(s0["image"], s1["image"]) and torch.equal(s0["posmap"], s1["posmap"])
    assert not torch.equal(a[(1, 1)]["posmap"], s0["posmap"])  # another epoch, another draw
    assert s0["key"] == a.keys[1]
    # the dataset's sample equals augment_pair with the documented generator
    from face3d_data.train.task import sample_rng

    image, label = a.read(1)
    img, pos = augment_pair(image, label, sample_rng(3, 0, a.keys[1]), aug)
    np.testing.assert_array_equal(s0["posmap"].numpy().transpose(1, 2, 0), pos)
    np.testing.assert_array_equal(s0["image"].numpy().transpose(1, 2, 0), img)


# ---- the loop through the CLI --------------------------------------------------------------------

def test_train_few_steps_finite_loss_checkpoint_and_logs(data, tmp_path):
    run = tmp_path / "run"
    assert train_main(small(data, run, "--max-steps", "3", "--val-datalist", data["val"],
                            "--preview-every", "2", "--log-every", "1")) == 0
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()
    steps = [r for r in rows(run) if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and r["loss"] > 0 for r in steps)
    assert (run / "previews" / "step_0000002.png").is_file()
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 3 and state["task"] == "prnet" and state["config"]["width"] == 4
    # 13 training samples / batch 4 = 3 batches: the epoch ended, validation ran and chose best.pt
    assert state["epoch"] == 1 and state["batch_in_epoch"] == 0
    assert any("val_nme_2d" in r for r in rows(run)) and (run / "checkpoints" / "best.pt").is_file()


def _weights(path):
    return torch.load(path, weights_only=False)


def test_resume_is_bit_identical_and_refuses_changes(data, tmp_path):
    common = ("--deterministic", "--log-every", "1", "--set", "aug_p_erase=1", "--set", "aug_p_color=1")
    full, part = tmp_path / "full", tmp_path / "part"
    assert train_main(small(data, full, "--max-steps", "5", *common)) == 0
    assert train_main(small(data, part, "--max-steps", "4", *common)) == 0     # stops mid-epoch 1
    assert train_main(small(data, part, "--max-steps", "5", *common, "--workers", "2")) == 0
    a, b = _weights(full / "checkpoints" / "last.pt"), _weights(part / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 5
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r["loss"] for r in rows(full)] == [r["loss"] for r in rows(part)]
    # a changed configuration or datalist is refused, unless forced
    assert train_main(small(data, part, "--max-steps", "6", *common, "--set", "lr=0.01")) == 2
    assert train_main(small(data, part, "--max-steps", "6", *common, "--set", "lr=0.01", "--force")) == 0


def test_bad_samples_are_dropped_with_failure_rows(data, tmp_path):
    pos = tmp_path / "pos"
    shutil.copytree(data["pos"], pos)
    rows_ = read_datalist(pos / "datalist" / "posmap_train.txt", pos, columns=2)
    label = load_npy(rows_[0][1]).astype(np.float32)
    label[5, 5, 0] = np.nan
    save_npy(rows_[0][1], label)
    os.remove(rows_[1][0])
    run = tmp_path / "run"
    args = small({**data, "train": str(pos / "datalist" / "posmap_train.txt")}, run, "--max-steps", "2")
    args[args.index("header")] = "full"
    assert train_main(args) == 3
    with open(run / "failures.csv", encoding="utf-8") as f:
        failed = list(csv.DictReader(f))
    assert sorted(r["key"] for r in failed) == sorted(
        os.path.splitext(os.path.basename(rows_[i][0]))[0] for i in (0, 1))
    assert any("NaN" in r["error"] for r in failed)
    assert (run / "checkpoints" / "last.pt").is_file()


class NaNTask(PRNetTask):
    """PRNet whose loss is NaN on every step (to exercise the guard)."""

    def loss(self, model, batch):
        total, parts = super().loss(model, batch)
        return total * float("nan"), parts


def test_nonfinite_guard_skips_and_aborts_with_exit_4(data, tmp_path, monkeypatch):
    from face3d_data.train import registry

    monkeypatch.setitem(registry.TASKS, "prnet", "test_train_prnet:NaNTask")
    run = tmp_path / "run"
    assert train_main(small(data, run, "--max-steps", "10", "--max-nonfinite", "2")) == 4
    with open(run / "nonfinite.jsonl", encoding="utf-8") as f:
        logged = [json.loads(line) for line in f]
    assert len(logged) == 2 and len(logged[0]["keys"]) == 4



class NaNOnceTask(PRNetTask):
    """PRNet whose loss is NaN on the first step only."""

    calls = 0

    def loss(self, model, batch):
        total, parts = super().loss(model, batch)
        NaNOnceTask.calls += 1
        return (total * float("nan") if NaNOnceTask.calls == 1 else total), parts


def test_nonfinite_step_is_skipped_without_a_trace_and_the_run_goes_on(data, tmp_path, monkeypatch):
    from face3d_data.train import registry

    # one bad step, then good ones: exit 0, one logged row naming the batch's 4 samples
    monkeypatch.setitem(registry.TASKS, "prnet", "test_train_prnet:NaNOnceTask")
    NaNOnceTask.calls = 0
    run = tmp_path / "once"
    assert train_main(small(data, run, "--max-steps", "3", "--max-nonfinite", "2", "--log-every", "1")) == 0
    logged = [json.loads(line) for line in (run / "nonfinite.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1] and len(set(logged[0]["keys"])) == 4
    losses = [r["loss"] for r in rows(run) if "loss" in r]
    assert np.isnan(losses[0]) and all(np.isfinite(v) for v in losses[1:]) and len(losses) == 3
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=False)["step"] == 3
    # a skipped step changes nothing in the model: weights and BatchNorm statistics are the initial ones
    monkeypatch.setitem(registry.TASKS, "prnet", "test_train_prnet:NaNTask")
    run = tmp_path / "skipped"
    assert train_main(small(data, run, "--max-steps", "1", "--max-nonfinite", "2")) == 0
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    task = PRNetTask(state["config"])
    task.load_extras(state["extras"])
    torch.manual_seed(int(state["config"]["seed"]))          # the loop seeds torch, then builds the model
    fresh = task.build_model().state_dict()
    assert state["model"].keys() == fresh.keys()
    for k, v in fresh.items():
        assert torch.equal(state["model"][k], v), k
    assert not state["optimizer"]["state"]                    # no optimizer step was taken

def test_usage_errors_exit_2_with_one_line(data, tmp_path, capsys):
    assert train_main(["prnet", "--out", str(tmp_path / "r")]) == 2
    assert train_main(["prnet", "--out", str(tmp_path / "r"), "--datalist", data["train"], "--set", "nope=1"]) == 2
    assert train_main(["nosuchtask", "--out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error:") for line in err)


def test_eval_and_predict_outputs(data, tmp_path):
    run = tmp_path / "run"
    assert train_main(small(data, run, "--max-steps", "2")) == 0
    ckpt = str(run / "checkpoints" / "last.pt")
    ev = tmp_path / "eval"
    assert train_main(["eval", "prnet", "--checkpoint", ckpt, "--datalist", data["train"], "--out", str(ev),
                       "--set", f"yaw_root={data['synth']}"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["samples"] == len(read_datalist(data["train"], data["pos"], columns=2))
    assert np.isfinite(metrics["nme_2d"]) and np.isfinite(metrics["nme_3d"]) and "ground-truth" in metrics["normaliser"]
    buckets = metrics["nme_2d_by_yaw"]
    assert sum(buckets[b]["count"] for b in ("0-30", "30-60", "60-90")) == metrics["samples"]
    assert (ev / "worst_cases.jpg").is_file()

    images = tmp_path / "images"
    images.mkdir()
    for name in ("synth_000000.jpg", "synth_000001.jpg"):
        shutil.copy(os.path.join(data["synth"], name), images / name)
    out = tmp_path / "pred"
    assert train_main(["predict", "prnet", "--checkpoint", ckpt, "--img_folder", str(images), "--out", str(out)]) == 0
    from face3d_data.io.landmarks import read_landmarks
    from face3d_data.io.mesh import read_mesh

    pos = np.load(out / "synth_000000.npy")
    assert pos.shape == (R, R, 3) and pos.dtype == np.float32
    # the map is in the input image's frame (128 px here): decoded landmarks == the written ones
    uv = load_uv_data(os.path.join(data["pos"], "uv-data"))
    lm = read_landmarks(out / "landmarks" / "synth_000000.txt")
    np.testing.assert_allclose(lm, decode_landmarks(pos, uv.kpt_weights)[:, :2], atol=1e-3)
    mesh = read_mesh(out / "synth_000000.obj")
    assert mesh.vertices.shape == (uv.face_ind.size, 3) and len(mesh.triangles) == len(uv.triangles)
    assert (out / "contact_sheet.jpg").is_file()


def test_crop_to_image_frame_maps_pixel_centres():
    from face3d_data.train.prnet import crop_to_image

    pos = np.zeros((4, 4, 3), np.float32)
    pos[0, 0] = (-0.5, 3.5, 2.0)           # the crop's outer corner x and y
    out = crop_to_image(pos, 8, 16)
    np.testing.assert_allclose(out[0, 0], (-0.5, 15.5, 2.0 * np.sqrt(2 * 4)))


@pytest.mark.slow
def test_overfit_few_samples_loss_halves_and_nme_improves(data, tmp_path):
    from face3d_data.io import write_datalist

    # the first 4 training samples; paths relative to the list folder's parent, the default root of
    # training and eval alike
    dl = tmp_path / "lists" / "four.txt"
    write_datalist(dl, read_datalist(data["train"], data["pos"], columns=2)[:4], tmp_path)
    run = tmp_path / "run"
    # 4 samples, batch 4: every step is a whole epoch. The network first outputs a nearly constant map
    # (loss ~0.31 = the best spatially constant map of these 4 samples, vs 0.20 for their mean map) and
    # then learns the map's layout through the 3-channel BN + ReLU tail of ResFCN (as in PRNet). With
    # Adam above ~0.002 those 3-channel ReLUs die and the loss stalls near the constant map (lr 0.005 / 0.01:
    # 0.31 after 50 steps); lr 0.001 at width 4 reaches loss ratio ~0.30 and NME ratio ~0.25 in 100 steps.
    # bn_momentum 0.5: the running statistics used in eval mode follow the few training batches.
    args = small(data, run, "--epochs", "1000", "--no-augment", "--lr", "0.001", "--lr-decay", "1",
                 "--log-every", "1", "--uv-data", os.path.join(data["pos"], "uv-data"), "--set", "bn_momentum=0.5")
    args[args.index("--datalist") + 1] = str(dl)

    def nme(name):
        out = tmp_path / name
        shutil.copy(run / "checkpoints" / "last.pt", tmp_path / f"{name}.pt")
        assert train_main(["eval", "prnet", "--checkpoint", str(tmp_path / f"{name}.pt"), "--datalist", str(dl),
                           "--out", str(out), "--device", "cpu"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["samples"] == 4
        return metrics["nme_2d"]

    # NME after the first step and at the end (eval mode, the 4 training samples); the run in between is
    # resumed from step 1 (exact resume is tested above), so no per-step validation costs time
    assert train_main(args + ["--max-steps", "1"]) == 0
    nme0 = nme("eval0")
    assert train_main(args + ["--max-steps", "100"]) == 0
    nme1 = nme("eval1")
    losses = [r["loss"] for r in rows(run) if "loss" in r]
    assert len(losses) == 100 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) <= np.mean(losses[:5]) / 2, losses
    assert nme1 < 0.6 * nme0, (nme0, nme1)


@pytest.mark.slow
def test_two_process_cpu_torchrun_runs_and_resumes(data, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
            "-m", "pipelines.train"] + small(data, run)
    for steps in ("2", "4"):
        proc = subprocess.run(base + ["--max-steps", steps], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["step"] == 4 and state["world_size"] == 2
    assert [r["step"] for r in rows(run) if "loss" in r] == [2, 4]   # one writer: one row per run end
    assert json.loads((run / "run.json").read_text())["resumed_from"].endswith("last.pt")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible to torch)")
def test_cuda_bf16_steps(data, tmp_path):
    run = tmp_path / "run"
    args = small(data, run, "--max-steps", "2")
    args[args.index("cpu")] = "cuda"
    assert train_main(args + ["--amp", "bf16"]) == 0
    assert all(np.isfinite(r["loss"]) for r in rows(run) if "loss" in r)
