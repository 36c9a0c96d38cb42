"""The pncc and depth stages on a tiny 300W-LP-layout tree, against the library functions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_named

from face3d_data.io import load_npy, read_image, write_image, write_mat
from face3d_data.morphable.testing import random_model
from face3d_data.render import ncc_code, render_depth, render_pncc
from face3d_data.w300lp import project

NAMES = ["AFW/AFW_1_1_0", "HELEN/HELEN_2_1_3"]
SIZE = 96


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("300W_LP")
    model = random_model(900, 3, 2, seed=1)
    model_path = str(root.parent / "model.npz")
    model.save(model_path)
    rng = np.random.default_rng(2)
    faces = {}
    for i, name in enumerate(NAMES):
        shape = rng.normal(size=(3, 1)) * model.shape_std[:, None]
        exp = rng.normal(size=(2, 1))
        pose = np.array([[0.1, 0.3 * (i - 0.5), 0.05, 48, 47, 10.0, 4e-4]], np.float32)
        write_image(str(root / f"{name}.jpg"), rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))
        write_mat(str(root / f"{name}.mat"), {"Pose_Para": pose, "Shape_Para": shape, "Exp_Para": exp})
        faces[name] = project(model.vertices(shape, exp), pose.ravel(), (SIZE, SIZE))
    return {"root": str(root), "model": model, "model_path": model_path, "faces": faces}


def test_pncc_stage(dataset, tmp_path):
    summary = run_named("pncc", tmp_path, data_root=dataset["root"], model=dataset["model_path"], npy=True)
    assert summary.failed == 0 and summary.processed == len(NAMES)
    model = dataset["model"]
    code = ncc_code(model.mean)
    for name, verts in dataset["faces"].items():
        expected = render_pncc(verts, model.triangles, code, SIZE, SIZE)
        assert (expected.sum(-1) > 0).mean() > 0.05
        np.testing.assert_allclose(load_npy(str(tmp_path / f"{name}_pncc.npy")), expected, atol=1e-4)
        png = read_image(str(tmp_path / f"{name}_pncc.png")).astype(int)
        assert np.abs(png - np.round(expected * 255)).max() <= 1


def test_depth_stage(dataset, tmp_path):
    summary = run_named("depth", tmp_path, data_root=dataset["root"], model=dataset["model_path"])
    assert summary.failed == 0 and summary.processed == len(NAMES)
    for name, verts in dataset["faces"].items():
        expected = render_depth(verts, dataset["model"].triangles, SIZE, SIZE)
        np.testing.assert_allclose(load_npy(str(tmp_path / f"{name}_depth.npy")), expected.depth, atol=1e-3)
        mask = read_image(str(tmp_path / f"{name}_mask.png"))[..., 0] > 127
        assert np.array_equal(mask, expected.mask)
        visual = read_image(str(tmp_path / f"{name}_depth.png"))[..., 0]
        assert np.all(visual[~mask] == 0) and visual[mask].min() >= 1 and visual.max() == 255
