"""params task: crop/pose algebra, geometry vs the numpy 300W-LP projection, WPDC weights, the real CLI."""

import json
import math
import pathlib

import numpy as np
import pytest
import torch
from train_fixtures import synth_300wlp

from face3d_data.morphable import load_model
from face3d_data.train.params_data import crop_matrix, crop_pose
from face3d_data.train.params_losses import ParamSpace
from face3d_data.w300lp import project
from pipelines.train import main


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return synth_300wlp(tmp_path_factory.mktemp("params") / "synth", count=12, yaw_range_deg=70)


@pytest.fixture(scope="module")
def model():
    return load_model("builtin")


def _pose(seed):
    rng = np.random.default_rng(seed)
    return np.array([*(rng.uniform(-0.5, 0.5, 3)), 210.0, 190.0, 3.0, 1.1e-3])


def _coeffs(model, seed, b=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, model.n_shape)) * model.shape_std,
            rng.standard_normal((b, model.n_exp)) * model.exp_std)


def test_crop_pose_moves_the_projection_with_the_crop(model):
    sp, ep = _coeffs(model, 0)
    v = model.vertices(sp[0], ep[0]).astype(np.float64)
    pose = _pose(1)
    full = project(v, pose, (450, 430))
    box = np.array([120.0, 95.0, 320.0, 295.0])
    m = crop_matrix(box, 120)
    cropped = project(v, crop_pose(pose, m, (450, 430), 120), (120, 120))
    np.testing.assert_allclose(cropped[:, :2], full[:, :2] @ m[:, :2].T + m[:, 2], atol=1e-8)
    np.testing.assert_allclose(cropped[:, 2], full[:, 2] * m[0, 0], rtol=1e-10, atol=1e-8)
    # the box's corner pixels land on the crop's corner pixels' outer edges
    np.testing.assert_allclose(np.array([box[0] - 0.5, box[2] - 0.5]) * m[0, 0] + m[0, 2], [-0.5, 119.5])


def test_param_space_projection_matches_numpy(model):
    ks, ke = 40, 13
    space = ParamSpace(model, ks, ke, np.zeros(7 + ks + ke), np.ones(7 + ks + ke), 120)
    sp, ep = _coeffs(model, 2, b=2)
    poses = np.stack([_pose(3), _pose(4)])
    p = torch.tensor(np.concatenate([poses, sp, ep], 1))
    got = space.vertices(p).numpy()
    for i in range(2):
        want = project(model.vertices(sp[i], ep[i]).astype(np.float64), poses[i], (120, 120))
        np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-3)


def test_wpdc_weights_are_the_vertex_displacement_of_each_parameter(model):
    ks, ke = 40, 13
    space = ParamSpace(model, ks, ke, np.zeros(7 + ks + ke), np.ones(7 + ks + ke), 120)
    sp, ep = _coeffs(model, 5)
    gt = torch.tensor(np.concatenate([[_pose(6)], sp, ep], 1))
    pred = gt + torch.tensor(np.random.default_rng(7).standard_normal(gt.shape)) * torch.cat(
        [torch.tensor([0.05, 0.05, 0.05, 3, 3, 3, 1e-4]), torch.tensor(model.shape_std[:ks]) * 0.3,
         torch.tensor(model.exp_std[:ke]) * 0.3]).double()
    index = space.sample_index(132, torch.Generator().manual_seed(0))
    w = space.wpdc_weights(pred, gt, index)
    base = space.vertices(gt, index)
    raw = []
    for i in range(gt.shape[1]):
        q = gt.clone()
        q[0, i] = pred[0, i]
        raw.append(float((space.vertices(q, index) - base).flatten().norm()))
    raw = np.array(raw)
    raw[5] = 0                                     # tz: a depth offset, weight 0 (3DDFA)
    np.testing.assert_allclose(w[0].numpy(), np.where(np.arange(len(raw)) == 5, 0, raw / raw.max() + 1e-6),
                               rtol=1e-6, atol=1e-9)


def _rows(run):
    return [json.loads(line) for line in pathlib.Path(run, "metrics.jsonl").read_text().splitlines()]


def _train(data_root, out, *extra):
    return main(["params", "--data-root", data_root, "--out", str(out), "--batch-size", "4", "--workers", "0",
                 "--device", "cpu", "--input-size", "64", "--log-every", "1", "--quiet", "--resume", "never",
                 "--set", "val_list=", *extra])


def test_cli_trains_saves_whitening_and_evaluates(data_root, tmp_path):
    assert _train(data_root, tmp_path / "run", "--max-steps", "2") == 0
    ckpt = tmp_path / "run" / "checkpoints" / "last.pt"
    assert ckpt.exists()
    assert all(math.isfinite(r["loss"]) for r in _rows(tmp_path / "run") if "loss" in r)
    saved = torch.load(ckpt, weights_only=False)
    mean = saved["extras"]["param_mean"]
    assert mean.shape == (7 + 40 + 13,)
    # whitening statistics = mean of the training list's crop labels
    from face3d_data.train.params import ParamsTask
    task = ParamsTask(saved["config"])
    train, _ = task.datasets()
    vecs = np.stack([train.load(i, None)["params"].numpy() for i in range(len(train))])
    np.testing.assert_allclose(mean.numpy(), vecs.mean(0), rtol=1e-9, atol=1e-12)
    rc = main(["eval", "params", "--checkpoint", str(ckpt), "--datalist", "test.txt", "--out",
               str(tmp_path / "eval"), "--device", "cpu", "--workers", "0"])
    assert rc == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["samples"] > 0 and 0 < metrics["nme_2d"] < 1 and metrics["vertex_distance"] > 0
    assert (tmp_path / "eval" / "worst.png").exists()


@pytest.mark.parametrize("loss", ["vdc", "pdc"])
def test_other_losses_run(data_root, tmp_path, loss):
    assert _train(data_root, tmp_path / "run", "--max-steps", "1", "--loss", loss, "--backbone", "resnet18") == 0
    assert {"pdc", "vdc"} <= set(_rows(tmp_path / "run")[0])


def test_bad_options_exit_2(tmp_path, capsys):
    assert main(["params", "--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert main(["params", "--data-root", str(tmp_path), "--out", str(tmp_path / "r"), "--loss", "l1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def _resume_run(data_root, out, steps, *extra):
    # crop jitter on (per-sample RNG) and wpdc's seeded random vertices; batch 2
    return main(["params", "--data-root", str(data_root), "--out", str(out), "--batch-size", "2", "--workers", "0",
                 "--device", "cpu", "--input-size", "64", "--log-every", "1", "--quiet", "--deterministic",
                 "--check-samples", "none", "--set", "val_list=", "--backbone", "resnet18",
                 "--max-steps", str(steps), *extra])


@pytest.mark.slow
def test_resume_is_bit_identical_and_refuses_changes(data_root, tmp_path):
    import shutil
    root = tmp_path / "root"                              # a copy: its train list is edited below
    shutil.copytree(data_root, root)
    n_train = len((root / "train.txt").read_text().splitlines())
    per_epoch = n_train // 2
    steps = per_epoch + 2                                  # the interruption and the end lie in two epochs
    full, part = tmp_path / "full", tmp_path / "part"
    assert _resume_run(root, full, steps) == 0
    assert _resume_run(root, part, per_epoch - 1) == 0      # interrupted mid-epoch 0
    assert _resume_run(root, part, steps) == 0              # resumed (--resume auto)
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=False)
    assert a["step"] == b["step"] == steps and a["epoch"] == 1
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r["loss"] for r in _rows(full) if "loss" in r] == [r["loss"] for r in _rows(part) if "loss" in r]
    # a changed configuration is refused (exit 2, nothing trained) unless forced
    assert _resume_run(root, part, steps + 1, "--set", "n_random=64") == 2
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["step"] == steps
    # a changed datalist (the same samples in another order) is refused unless forced
    lines = (root / "train.txt").read_text().splitlines()
    (root / "train.txt").write_text("\n".join(lines[::-1]) + "\n")
    assert _resume_run(root, part, steps + 1) == 2
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["step"] == steps
    assert _resume_run(root, part, steps + 1, "--force") == 0
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["step"] == steps + 1


@pytest.mark.slow
def test_overfitting_a_few_samples_lowers_loss_and_nme(data_root, tmp_path):
    out = tmp_path / "run"
    # bn_momentum 0.5: eval-mode statistics follow the weights of so short a run (at 0.1: NME 0.43x, here 0.14x)
    assert _train(data_root, out, "--max-steps", "30", "--set", "limit=4", "--no-augment", "--lr", "0.001",
                  "--check-samples", "none", "--loss", "vdc", "--backbone", "resnet18", "--set", "bn_momentum=0.5") == 0
    rows = [r for r in _rows(out) if "loss" in r]
    assert np.mean([r["loss"] for r in rows[-3:]]) < np.mean([r["loss"] for r in rows[:3]]) / 2
    ckpt = out / "checkpoints" / "last.pt"
    rc = main(["eval", "params", "--checkpoint", str(ckpt), "--datalist", "train.txt", "--out", str(tmp_path / "e"),
               "--device", "cpu", "--workers", "0", "--set", "limit=4"])
    assert rc == 0
    nme = json.loads((tmp_path / "e" / "metrics.json").read_text())["nme_2d"]
    # the untrained network predicts the mean label (zero head): compare with its NME
    rc = _train(data_root, tmp_path / "run0", "--max-steps", "1", "--lr", "1e-12", "--set", "limit=4",
                "--no-augment", "--check-samples", "none", "--backbone", "resnet18")
    assert rc == 0
    main(["eval", "params", "--checkpoint", str(tmp_path / "run0" / "checkpoints" / "last.pt"), "--datalist",
          "train.txt", "--out", str(tmp_path / "e0"), "--device", "cpu", "--workers", "0", "--set", "limit=4"])
    nme0 = json.loads((tmp_path / "e0" / "metrics.json").read_text())["nme_2d"]
    assert nme < 0.5 * nme0, (nme0, nme)
