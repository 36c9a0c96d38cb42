"""Streamed synthesis: many groups of vertices with the basis read once equal one product per group,
bit for bit, and the posmap stage's bytes do not depend on its runner batch size."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from conftest import run_named
from threadpoolctl import threadpool_limits

from face3d_data.io import write_image, write_mat
from face3d_data.morphable import streamed
from face3d_data.morphable.testing import random_model
from face3d_data.posmap import batch_vertices


@pytest.fixture(scope="module")
def model():
    # 3 x 3000 = 9000 basis rows: a first tile, and a last one of another length
    return random_model(3000, 199, 29, seed=1, n_tex=4)


def _groups(model, sizes, seed=0):
    rng = np.random.default_rng(seed)
    k = model.n_shape + model.n_exp
    return [(rng.standard_normal((b, k)) * np.r_[model.shape_std, model.exp_std]).astype(np.float32)
            for b in sizes]


@pytest.mark.parametrize("threads", [1, None])
def test_grouped_vertices_equal_one_product_per_group(model, threads):
    groups = _groups(model, [8, 1, 5, 8, 2, 3, 7, 4, 6])
    with threadpool_limits(limits=threads):
        got = streamed.grouped_vertices(model, groups)
        want = [model.vertices(g[:, :model.n_shape], g[:, model.n_shape:]) for g in groups]
    assert [g.shape for g in got] == [(len(g), model.n_vertices, 3) for g in groups]
    for a, b in zip(got, want):
        assert a.dtype == np.float32 and np.array_equal(a, b)  # bit for bit, not allclose


def test_tiled_products_equal_the_one_call_product_on_this_blas(model):
    """The tiling itself (several tiles, a discarded lead before each): bit-equal to one call
    when the probe says so, and the probe agrees with a direct comparison on the full basis."""
    block, mean = model.basis_matrix, model.mean.reshape(-1)
    groups = _groups(model, range(1, 9), seed=2)
    with threadpool_limits(limits=1):
        tiled = streamed._tiled(groups, block, mean, tile=2048, lead=768)
        direct = [streamed._one_product(g, block, mean) for g in groups]
        same = all(np.array_equal(a, b) for a, b in zip(tiled, direct))
        assert streamed.streaming_is_exact(block, range(1, 9), tile=2048, lead=768) == same
    # independent of BLAS: float64 reference within float32 rounding
    ref = groups[3].astype(np.float64) @ block.T.astype(np.float64) + mean
    np.testing.assert_allclose(tiled[3], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("vertices", [3000, 9000])
def test_merge_probe_agrees_with_a_direct_comparison(model, vertices):
    """merging_is_exact (probe on random coefficients, on part of the rows for the 27,000-row
    basis) says, per group, whether its rows of one merged product equal its own product; a direct
    comparison on the whole basis with other coefficients must agree, and grouped_vertices must
    stay bit-equal either way."""
    if vertices != model.n_vertices:
        model = random_model(vertices, 199, 29, seed=2, n_tex=2)
    block, mean = model.basis_matrix, model.mean.reshape(-1)
    for sizes in ([8] * 8, [8, 8, 3], [1, 2, 8, 7, 8], [4] * 16):
        groups = _groups(model, sizes, seed=len(sizes))
        with threadpool_limits(limits=1):
            said = streamed.merging_is_exact(block, sizes)
            merged = streamed._one_product(np.concatenate(groups), block, mean)
            own = [streamed._one_product(g, block, mean) for g in groups]
            got = streamed.grouped_vertices(model, groups)
        starts = np.cumsum([0] + sizes)
        seen = [np.array_equal(merged[a:b], o) for a, b, o in zip(starts[:-1], starts[1:], own)]
        assert said == seen, sizes
        assert all(np.array_equal(g.reshape(len(g), -1), o) for g, o in zip(got, own))


def test_merge_probe_keeps_the_row_layout_of_the_basis():
    """The probe's rows keep the basis's row count modulo PROBE_ROWS (so its blocks of rows fall
    as in the full product) and are the whole basis when that is smaller."""
    rows = 2 * streamed.PROBE_ROWS + 1000
    assert min(rows, 2 * streamed.PROBE_ROWS + rows % streamed.PROBE_ROWS) == rows
    rows = 159645  # the BFM's 3 x 53215
    probe = min(rows, 2 * streamed.PROBE_ROWS + rows % streamed.PROBE_ROWS)
    assert probe < rows and probe % streamed.PROBE_ROWS == rows % streamed.PROBE_ROWS
    assert all(streamed.PROBE_ROWS % p == 0 for p in (256, 320, 384, 512, 640, 768, 960))


def test_grouped_vertices_rejects_bad_groups(model):
    with pytest.raises(ValueError, match="float32"):
        streamed.grouped_vertices(model, [np.zeros((2, 5), np.float32)])
    with pytest.raises(ValueError, match="NaN"):
        streamed.grouped_vertices(model, [np.full((1, model.n_shape + model.n_exp), np.nan, np.float32)])
    assert streamed.grouped_vertices(model, []) == []


def test_batch_vertices_groups_are_separate_products(model):
    rng = np.random.default_rng(3)
    pairs = [(rng.normal(size=model.n_shape) * model.shape_std, rng.normal(size=model.n_exp) * model.exp_std)
             for _ in range(13)]
    pairs[4] = pairs[1]  # a repeated face inside a group is evaluated once
    with threadpool_limits(limits=1):
        grouped = batch_vertices(model, pairs, group=8)
        per_batch = batch_vertices(model, pairs[:8]) + batch_vertices(model, pairs[8:])
        sized = batch_vertices(model, pairs, group=[3, 0, 10])
        per_size = batch_vertices(model, pairs[:3]) + batch_vertices(model, pairs[3:])
    assert all(np.array_equal(a, b) for a, b in zip(grouped, per_batch))
    assert all(np.array_equal(a, b) for a, b in zip(sized, per_size))
    assert np.shares_memory(grouped[1], grouped[4]) and not grouped[0].flags.writeable
    with pytest.raises(ValueError, match="add up"):
        batch_vertices(model, pairs, group=[5, 5])
    with pytest.raises(ValueError, match="positive"):
        batch_vertices(model, pairs, group=0)


def _digest(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.startswith(("manifest", ".")) or ".face3d" in folder:
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_posmap_bytes_do_not_depend_on_the_runner_batch(model, tmp_path, monkeypatch):
    """Batches of 64 (basis streamed once per batch) give the bytes of batches of 8 (one
    product per batch, the stage before streaming), including a damaged sample in a group."""
    from face3d_data.w300lp.synth import synthesize
    from pipelines.core import build_config
    from pipelines.stages.posmap import PosmapStage

    root = tmp_path / "300W_LP"
    rng = np.random.default_rng(4)
    for i in range(19):
        s = synthesize(model, rng, 160, yaw_range_deg=40.0)
        write_image(str(root / "AFW" / f"AFW_{i}_1_0.jpg"), s.image)
        write_mat(str(root / "AFW" / f"AFW_{i}_1_0.mat"), s.labels)
    (root / "AFW" / "AFW_10_1_0.mat").write_bytes(b"not a mat file")
    model_path = str(tmp_path / "model.npz")
    model.save(model_path)
    options = {"data_root": str(root), "model": model_path, "resolution": 64, "posmap_png_every": 3}
    assert build_config("posmap").synthesis_group == 8 and PosmapStage.batch_size % 8 == 0
    streamed_run = run_named("posmap", tmp_path / "b64", **options)
    monkeypatch.setattr(PosmapStage, "batch_size", 8)
    monkeypatch.setattr(streamed, "grouped_vertices",
                        lambda m, groups: [streamed._one_product(g, m.basis_matrix, m.mean.reshape(-1))
                                           .reshape(len(g), m.n_vertices, 3) for g in groups])
    plain_run = run_named("posmap", tmp_path / "b8", **options)
    assert streamed_run.failed == plain_run.failed == 1
    assert _digest(tmp_path / "b64") == _digest(tmp_path / "b8")


def test_synthesis_group_option(model, tmp_path):
    """synthesis_group must divide the runner batch; 64 gives maps equal to 8's up to float32
    rounding of the basis product (the documented trade)."""
    from face3d_data.errors import ConfigError

    with pytest.raises(ConfigError, match="synthesis_group"):
        run_named("posmap", tmp_path / "bad", data_root=str(tmp_path), synthesis_group=12)
    rng = np.random.default_rng(5)
    pairs = [(rng.normal(size=model.n_shape) * model.shape_std, rng.normal(size=model.n_exp) * model.exp_std)
             for _ in range(64)]
    with threadpool_limits(limits=1):
        by8 = np.stack(batch_vertices(model, pairs, group=8))
        by64 = np.stack(batch_vertices(model, pairs, group=64))
    scale = np.abs(by8).max()
    assert np.abs(by64 - by8).max() <= 1e-6 * scale
