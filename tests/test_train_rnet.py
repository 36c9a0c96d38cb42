"""R-Net task: face model, augmentation, losses, and the real CLI on data_preparation's layout."""

import json
import math
import os
import pathlib

import cv2
import numpy as np
import pytest
import torch
import yaml
from train_fixtures import rnet_layout, synth_300wlp

from face3d_data.errors import ConfigError
from face3d_data.train.rnet_arcface import IResNet, five_points, similarity_to_template
from face3d_data.train.rnet_data import MIRROR_68, augmentation_matrix
from face3d_data.train.rnet_face import RNetFaceModel, euler_to_matrix, sh_basis
from face3d_data.train.rnet_losses import landmark_loss, photometric_loss
from face3d_data.w300lp import angles_to_matrix
from pipelines.train import main


def _cfg(**kw):
    from face3d_data.train.task import COMMON_DEFAULTS
    cfg = dict(COMMON_DEFAULTS)
    with open(os.path.join(os.path.dirname(__file__), "..", "pipelines", "configs", "train_rnet.yaml")) as f:
        cfg.update(yaml.safe_load(f))
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("rnet")
    synth = synth_300wlp(base / "synth", count=8, yaw_range_deg=30)
    return rnet_layout(synth, str(base / "root"), val=2)


@pytest.fixture(scope="module")
def frontal_root(tmp_path_factory):
    """Mean-shape, neutral, frontal, centred synthetic faces."""
    base = tmp_path_factory.mktemp("rnet_frontal")
    synth = synth_300wlp(base / "synth", count=2, yaw_range_deg=0, shape_scale=0, exp_scale=0,
                         pitch_std_deg=0, roll_std_deg=0, center_jitter=0)
    return rnet_layout(synth, str(base / "root"), val=0)


def test_builtin_face_model_sizes_units_and_rotation():
    from face3d_data.morphable import load_model
    model = load_model("builtin")
    face = RNetFaceModel(model)
    assert face.n_coefficients == 40 + 13 + 15 + 3 + 27 + 3
    out = face(torch.zeros(1, face.n_coefficients))
    jaw = out.vertices[0, face.landmark_index[[0, 16]]]
    assert 1.0 < float((jaw[0] - jaw[1]).norm()) < 1.8            # ~13 cm jaw: decimetres
    ang = torch.tensor([[0.2, -0.4, 0.1]], dtype=torch.float64)
    np.testing.assert_allclose(euler_to_matrix(ang)[0].numpy(), angles_to_matrix(0.2, -0.4, 0.1, "deep3d"),
                               atol=1e-12)
    # normals point out of the face: the nose tip's normal faces the camera (+z)
    assert out.normals[0, face.landmark_index[30], 2] > 0.8
    # ambient light only: colour = 0.8 * a0 c0 * albedo
    np.testing.assert_allclose(out.colour.numpy(), (0.8 * math.sqrt(math.pi) / 2 * out.albedo).numpy(), rtol=1e-5)
    assert sh_basis(torch.tensor([[0.0, 0.0, 1.0]])).shape == (1, 9)


def test_zero_coefficients_render_the_mean_face_on_the_aligned_landmarks(frontal_root):
    from face3d_data.train.rnet import RNetTask
    task = RNetTask(_cfg(data_root=frontal_root, image_size=224, val_mode=""))
    task.check_config()
    train, _ = task.datasets()
    sample = train.load(0, None)
    out = task.face_model()(torch.zeros(1, task.face_model().n_coefficients))
    err = (out.landmarks[0] - sample["landmarks"]).norm(dim=-1)[17:]   # jaw points are silhouette-marched
    # the remaining difference is perspective (R-Net) vs scaled orthographic (300W-LP) projection
    assert float(err.mean()) < 0.5 and float(err.max()) < 1.2


def test_augmentation_moves_image_mask_and_landmarks_together(data_root):
    from face3d_data.train.rnet import RNetTask
    task = RNetTask(_cfg(data_root=data_root, image_size=96))
    task.check_config()
    train, _ = task.datasets()
    assert train.augment
    plain = train.load(0, None)
    rng_seen_flip = False
    for epoch in range(6):
        s = train[(0, epoch)]
        assert s["image"].shape == (3, 96, 96) and s["mask"].shape == (1, 96, 96)
        # the same sample and epoch always give the same augmentation (per-sample seeded)
        assert torch.equal(s["landmarks"], train[(0, epoch)]["landmarks"])
        lm = s["landmarks"].numpy()
        # the augmented landmarks are a similarity image of the plain ones (possibly mirrored)
        base = plain["landmarks"].numpy().astype(np.float64)
        design = np.concatenate([base, np.ones((68, 1))], 1)
        found = False
        for flip in (False, True):
            src = design[MIRROR_68] if flip else design
            sol, *_ = np.linalg.lstsq(src, lm.astype(np.float64), rcond=None)
            if np.abs(src @ sol - lm).max() < 1e-3:
                a = sol[:2].T
                det = np.linalg.det(a)
                assert (det < 0) == flip and 0.89 ** 2 < abs(det) < 1.11 ** 2
                np.testing.assert_allclose(a @ a.T, abs(det) * np.eye(2), atol=1e-4)   # a similarity
                rng_seen_flip |= flip
                found = True
                break
        assert found, "augmented landmarks are not a similarity image of the plain ones"
    assert rng_seen_flip


def test_warp_convention_puts_points_where_the_matrix_says():
    rng = np.random.default_rng(1)
    matrix, _flip = augmentation_matrix(rng, 64)
    image = np.zeros((64, 64), np.float32)
    image[20, 30] = 1.0
    warped = cv2.warpAffine(image, matrix[:2], (64, 64), flags=cv2.INTER_LINEAR)
    y, x = np.unravel_index(np.argmax(warped), warped.shape)
    q = matrix[:2, :2] @ [30, 20] + matrix[:2, 2]
    assert abs(x - q[0]) <= 0.5 + 1e-6 and abs(y - q[1]) <= 0.5 + 1e-6


def test_mirror_permutation_matches_a_symmetric_face():
    from face3d_data.morphable import load_model
    model = load_model("builtin")
    lm = model.vertices()[model.landmarks].astype(np.float64)
    mirrored = lm.copy()
    mirrored[:, 0] *= -1
    assert (MIRROR_68[MIRROR_68] == np.arange(68)).all()
    width = lm[:, 0].max() - lm[:, 0].min()
    assert np.abs(mirrored[MIRROR_68] - lm).max() < 0.02 * width


def test_loss_definitions():
    render = torch.zeros(1, 3, 2, 2)
    image = torch.zeros(1, 3, 2, 2)
    image[0, :, 0, 0] = torch.tensor([0.3, 0.4, 0.0])
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert photometric_loss(render, image, mask, eps=0).item() == pytest.approx(0.5 / 2)
    pred = torch.zeros(2, 68, 2)
    tgt = torch.zeros(2, 68, 2)
    tgt[:, 30, 0] = 1.0        # a weight-20 point, 1 px off
    tgt[:, 0, 1] = 1.0         # a weight-1 point
    assert landmark_loss(pred, tgt, 224).item() == pytest.approx(2 * 21 / 136)
    assert landmark_loss(pred, tgt, 112).item() == pytest.approx(4 * 2 * 21 / 136)


def test_similarity_to_arcface_template_is_exact_for_a_similarity_image():
    from face3d_data.landmarks import ARCFACE_TEMPLATE_112
    t = torch.tensor(ARCFACE_TEMPLATE_112, dtype=torch.float64)
    ang = 0.3
    rot = torch.tensor([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]], dtype=torch.float64)
    pts = (t @ rot.T) * 1.7 + torch.tensor([5.0, -3.0], dtype=torch.float64)
    m = similarity_to_template(pts[None])
    np.testing.assert_allclose((pts @ m[0, :, :2].T + m[0, :, 2]).numpy(), t.numpy(), atol=1e-9)
    assert five_points(torch.zeros(2, 68, 2)).shape == (2, 5, 2)


def _rows(run) -> list:
    return [json.loads(line) for line in pathlib.Path(run, "metrics.jsonl").read_text().splitlines()]


def _train(data_root, out, *extra):
    return main(["rnet", "--data-root", data_root, "--out", str(out), "--batch-size", "2", "--workers", "0",
                 "--device", "cpu", "--depth", "18", "--image-size", "64", "--log-every", "1", "--quiet",
                 "--resume", "never", *extra])


def test_cli_trains_a_few_steps_and_evaluates(data_root, tmp_path):
    rc = _train(data_root, tmp_path / "run", "--max-steps", "3")
    assert rc == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    rows = _rows(tmp_path / "run")
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses and all(math.isfinite(v) for v in losses)
    assert {"color", "lm", "reg", "gamma", "reflc"} <= set(rows[0])
    rc = main(["eval", "rnet", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.pt"),
               "--out", str(tmp_path / "eval"), "--device", "cpu", "--workers", "0"])
    assert rc == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 2 and 0 < metrics["nme_2d"] < 1 and metrics["photometric_error"] > 0
    assert (tmp_path / "eval" / "worst.png").exists()


@pytest.mark.parametrize("flag", ["--arcface-weights", "--imagenet-weights"])
def test_missing_weight_files_exit_2_with_one_line(data_root, tmp_path, flag, capsys):
    rc = main(["rnet", "--data-root", data_root, "--out", str(tmp_path / "r"), flag, str(tmp_path / "nope.pth")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nope.pth" in err


def test_weights_files_load_and_mismatches_are_config_errors(tmp_path):
    from face3d_data.train.backbones import ResNet, load_imagenet_weights
    from face3d_data.train.rnet_arcface import load_arcface
    net18 = ResNet(18)
    state = {**net18.state_dict(), "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "r18.pth")
    fresh = ResNet(18)
    load_imagenet_weights(fresh, str(tmp_path / "r18.pth"))
    assert torch.equal(fresh.conv1.weight, net18.conv1.weight)
    with pytest.raises(ConfigError, match="does not fit"):
        load_imagenet_weights(ResNet(34), str(tmp_path / "r18.pth"))
    arc = IResNet((1, 1, 1, 1), embedding=8)
    torch.save(arc.state_dict(), tmp_path / "backbone.pth")
    loaded = load_arcface(str(tmp_path / "backbone.pth"))
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(ConfigError, match="IResNet"):
        load_arcface(str(tmp_path / "r18.pth"))


def test_identity_loss_runs_with_a_local_arcface_file(data_root, tmp_path):
    torch.save(IResNet((1, 1, 1, 1), embedding=8).state_dict(), tmp_path / "backbone.pth")
    rc = _train(data_root, tmp_path / "run", "--max-steps", "1", "--arcface-weights", str(tmp_path / "backbone.pth"),
                "--set", "val_mode=")
    assert rc == 0
    row = _rows(tmp_path / "run")[0]
    assert "feat" in row and math.isfinite(row["feat"])


def _resume_run(data_root, out, steps, *extra):
    # augmentation on (per-sample RNG), 6 training samples / batch 2 = 3 steps per epoch
    return main(["rnet", "--data-root", data_root, "--out", str(out), "--batch-size", "2", "--workers", "0",
                 "--device", "cpu", "--depth", "18", "--image-size", "64", "--log-every", "1", "--quiet",
                 "--deterministic", "--check-samples", "none", "--set", "val_mode=", "--max-steps", str(steps),
                 *extra])


def _assert_same_state(a, b):
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.slow
def test_resume_is_bit_identical_and_refuses_changes(data_root, tmp_path):
    import shutil
    root = tmp_path / "root"                              # a copy: its datalists are edited below
    shutil.copytree(data_root, root)
    full, part = tmp_path / "full", tmp_path / "part"
    assert _resume_run(str(root), full, 4) == 0
    assert _resume_run(str(root), part, 2) == 0            # interrupted after 2 steps (mid-epoch 0)
    assert _resume_run(str(root), part, 4) == 0            # resumed (--resume auto) across the epoch end
    a = torch.load(full / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(part / "checkpoints" / "last.pt", weights_only=False)
    assert a["step"] == 4 and a["epoch"] == 1 and a["batch_in_epoch"] == 1
    _assert_same_state(a, b)
    assert [r["loss"] for r in _rows(full) if "loss" in r] == [r["loss"] for r in _rows(part) if "loss" in r]
    # a changed configuration is refused (exit 2, nothing trained) unless forced
    assert _resume_run(str(root), part, 5, "--set", "w_lm=0.002") == 2
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["step"] == 4
    # a changed datalist (the same samples in another order) is refused unless forced
    for kind in ("images", "landmarks", "masks"):
        path = root / "datalist" / "train" / f"{kind}.txt"
        path.write_text("\n".join(path.read_text().splitlines()[::-1]) + "\n")
    assert _resume_run(str(root), part, 5) == 2
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["step"] == 4
    assert _resume_run(str(root), part, 5, "--force") == 0
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["step"] == 5



def test_bad_samples_are_failure_rows_and_the_run_goes_on(data_root, tmp_path):
    import csv
    import shutil
    root = tmp_path / "root"
    shutil.copytree(data_root, root)
    images = (root / "datalist" / "train" / "images.txt").read_text().splitlines()
    marks = (root / "datalist" / "train" / "landmarks.txt").read_text().splitlines()
    bad_image = root / images[0]
    bad_image.write_bytes(b"not a jpeg")                               # unreadable image
    bad_lm = root / marks[1]
    rows_ = bad_lm.read_text().splitlines()
    bad_lm.write_text("\n".join(rows_[:40]) + "\n")                    # 40 landmarks instead of 68
    run = tmp_path / "run"
    assert _train(str(root), run, "--max-steps", "2", "--set", "val_mode=", "--check-samples", "full") == 3
    with open(run / "failures.csv", encoding="utf-8") as f:
        failed = list(csv.DictReader(f))
    assert len(failed) == 2
    assert {os.path.basename(r["path"]) for r in failed} == {bad_image.name, bad_lm.name}
    assert (run / "checkpoints" / "last.pt").exists()
    assert [r["step"] for r in _rows(run) if "loss" in r] == [1, 2]

@pytest.mark.slow
def test_overfitting_a_few_samples_lowers_the_loss_and_the_nme(data_root, tmp_path):
    # one batch of the same 4 samples per step and a small final learning rate. bn_momentum 0.5: at
    # torchvision's 0.1 the eval-mode running statistics lag the weights (eval NME 0.057 vs the mean
    # face's 0.061 while the train-mode landmark loss fell 12x; recalibrated statistics gave 0.021)
    rc = _train(data_root, tmp_path / "run", "--max-steps", "40", "--epochs", "40", "--lr", "0.0003",
                "--lr-decay", "0.1", "--lr-decay-epochs", "25", "--batch-size", "4", "--set", "limit=4",
                "--no-augment", "--set", "val_mode=", "--check-samples", "none", "--set", "bn_momentum=0.5")
    assert rc == 0
    rows = [r for r in _rows(tmp_path / "run") if "loss" in r]
    assert len(rows) == 40
    # step 1 is the mean face (zero head); the loss must fall at least 2x from there
    assert np.mean([r["lm"] for r in rows[-3:]]) < rows[0]["lm"] / 2
    assert np.mean([r["loss"] for r in rows[-3:]]) < rows[0]["loss"] / 2
    rc = main(["eval", "rnet", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.pt"), "--datalist",
               "train", "--out", str(tmp_path / "eval"), "--device", "cpu", "--workers", "0", "--set", "limit=4"])
    assert rc == 0
    nme = json.loads((tmp_path / "eval" / "metrics.json").read_text())["nme_2d"]
    # baseline: the untrained network (zero head) predicts the mean face
    from face3d_data.train.rnet import RNetTask
    task = RNetTask(_cfg(data_root=data_root, depth=18, image_size=64, limit=4))
    task.check_config()
    loader = torch.utils.data.DataLoader(task.eval_dataset("train"), batch_size=3)
    nme0 = task.evaluate(task.build_model(), loader, torch.device("cpu"))["nme_2d"]
    assert nme < 0.6 * nme0, (nme0, nme)  # landmarks improve on the mean face (measured 0.34x)


def test_deep3d_mask_file_gives_skin_flags_and_front_triangles(tmp_path):
    from face3d_data.io.mat import write_mat
    from face3d_data.morphable import load_model
    from face3d_data.train.rnet_face import load_deep3d_masks
    model = load_model("builtin")
    rng = np.random.default_rng(0)
    skin = rng.uniform(size=model.n_vertices) < 0.3
    chosen = np.sort(rng.choice(len(model.triangles), 500, replace=False))
    tri = np.roll(model.triangles[chosen], 1, axis=1) + 1            # 1-based, corners in another order
    write_mat(tmp_path / "front.mat", {"skinmask": skin[None].astype(np.float64), "tri_mask2": tri.astype(np.float64)})
    got_skin, got_front = load_deep3d_masks(str(tmp_path / "front.mat"), model)
    assert (got_skin == skin).all() and (np.flatnonzero(got_front) == chosen).all()
    face = RNetFaceModel(model, skin_mask=got_skin, front_triangles=got_front)
    assert int(face.front.sum()) == 500 and int(face.skin.sum()) == int(skin.sum())
    write_mat(tmp_path / "bad.mat", {"skinmask": skin[None, :100].astype(np.float64),
                                     "tri_mask2": tri.astype(np.float64)})
    with pytest.raises(ConfigError, match="skinmask"):
        load_deep3d_masks(str(tmp_path / "bad.mat"), model)


def test_nvdiffrast_without_it_or_cuda_is_one_exit_2_line(data_root, tmp_path, capsys):
    from face3d_data.render.torch import nvdiffrast_available

    if torch.cuda.is_available() and nvdiffrast_available():
        pytest.skip("nvdiffrast and CUDA are present: the renderer is valid here")
    rc = main(["rnet", "--data-root", data_root, "--out", str(tmp_path / "r"), "--set", "renderer=nvdiffrast"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "nvdiffrast" in err
    assert not (tmp_path / "r" / "checkpoints").exists()
