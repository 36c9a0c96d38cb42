"""The stage runner: determinism across backends, resume after SIGKILL, failures, sharding."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from runner_stages import PairStage

from face3d_data.errors import ConfigError
from face3d_data.io import write_mat
from pipelines.core import RunOptions, read_manifest, run_stage
from pipelines.core.seeding import in_shard, item_seed

HERE = os.path.dirname(os.path.abspath(__file__))


def digest_outputs(out_dir):
    """{relative path: sha256} of every item output (not manifests/state)."""
    result = {}
    for dirpath, dirs, files in os.walk(out_dir):
        dirs[:] = [d for d in dirs if d != ".face3d"]
        for f in files:
            if f.endswith(("_out.png", "_pose.npy")):
                p = os.path.join(dirpath, f)
                with open(p, "rb") as fh:
                    result[os.path.relpath(p, out_dir)] = hashlib.sha256(fh.read()).hexdigest()
    return result


def run(data_root, out, **kw):
    cfg = {"data_root": str(data_root), "sleep": kw.pop("sleep", 0.0)}
    return run_stage(PairStage, RunOptions(out=str(out), quiet=True, **kw), cfg=cfg)


def test_outputs_identical_across_jobs_and_backends(pair_folder, tmp_path):
    serial = run(pair_folder, tmp_path / "j1", jobs=1)
    assert serial.exit_code == 0 and serial.processed == 12
    reference = digest_outputs(tmp_path / "j1")
    assert len(reference) == 24
    run(pair_folder, tmp_path / "j2", jobs=2)
    run(pair_folder, tmp_path / "thr", jobs=2, backend="threading")
    assert digest_outputs(tmp_path / "j2") == reference
    assert digest_outputs(tmp_path / "thr") == reference


def test_dask_local_cluster_gives_identical_outputs(pair_folder, tmp_path):
    pytest.importorskip("dask.distributed")
    run(pair_folder, tmp_path / "j1", jobs=1)
    summary = run(pair_folder, tmp_path / "dask", jobs=2, backend="dask")
    assert summary.exit_code == 0 and summary.processed == 12
    assert digest_outputs(tmp_path / "dask") == digest_outputs(tmp_path / "j1")


def test_rerun_skips_complete_items_and_redoes_missing_ones(pair_folder, tmp_path):
    out = tmp_path / "out"
    first = run(pair_folder, out, jobs=1)
    assert (first.processed, first.skipped) == (12, 0)
    os.unlink(out / "AFW" / "img_01_out.png")
    second = run(pair_folder, out, jobs=1)
    assert (second.processed, second.skipped) == (1, 11)
    assert (out / "AFW" / "img_01_out.png").exists()
    third = run(pair_folder, out, jobs=1, overwrite=True)
    assert (third.processed, third.skipped) == (12, 0)


def test_changed_seed_redoes_items_with_the_new_seed(pair_folder, tmp_path):
    out = tmp_path / "out"
    run(pair_folder, out, jobs=1)
    seed0 = digest_outputs(out)
    run(pair_folder, tmp_path / "fresh5", jobs=1, seed=5)
    again = run(pair_folder, out, jobs=1, seed=5)
    assert (again.processed, again.skipped) == (12, 0)
    assert digest_outputs(out) == digest_outputs(tmp_path / "fresh5")
    assert all(digest_outputs(out)[k] != v for k, v in seed0.items())
    # a changed option (even one that does not change the bytes) redoes the items too
    changed = run(pair_folder, out, jobs=1, seed=5, sleep=0.001)
    assert (changed.processed, changed.skipped) == (12, 0)


def test_resume_after_sigkill_is_byte_identical(pair_folder, tmp_path):
    reference_dir = tmp_path / "reference"
    run(pair_folder, reference_dir, jobs=1)
    out = tmp_path / "killed"
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from runner_stages import PairStage\n"
        "from pipelines.core import RunOptions, run_stage\n"
        "run_stage(PairStage, RunOptions(out=%r, jobs=1, quiet=True),"
        " cfg={'data_root': %r, 'sleep': 0.15})\n" % (HERE, str(out), str(pair_folder)))
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = out / ".face3d" / "pairs.journal.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if journal.exists() and journal.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recorded = journal.read_text().count("\n")
    assert 4 <= recorded < 12, "the kill should land mid-run"
    # Nothing that looks like a finished output may be incomplete: compare what exists.
    reference = digest_outputs(reference_dir)
    partial = digest_outputs(out)
    assert all(reference[k] == v for k, v in partial.items())
    resumed = run(pair_folder, out, jobs=2, sleep=0.15)
    assert resumed.skipped >= recorded and resumed.skipped + resumed.processed == 12
    assert digest_outputs(out) == reference
    leftovers = [f for _, _, files in os.walk(out) for f in files
                 if not f.endswith(("_out.png", "_pose.npy", ".csv", ".parquet", ".json",
                                    ".jsonl", ".txt", ".png", ".lock"))]
    assert not leftovers, "the resumed run removes the killed run's temporary files"


def test_bad_items_are_reported_and_good_items_written(pair_folder, tmp_path):
    bad = pair_folder / "BAD"
    bad.mkdir()
    rng = np.random.default_rng(1)
    from conftest import make_pair

    make_pair(str(bad), "corrupt_jpeg", rng)
    (bad / "corrupt_jpeg.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg \xff\xd9")
    make_pair(str(bad), "zero_bytes", rng)
    (bad / "zero_bytes.jpg").write_bytes(b"")
    make_pair(str(bad), "truncated_mat", rng)
    data = (bad / "truncated_mat.mat").read_bytes()
    (bad / "truncated_mat.mat").write_bytes(data[: len(data) // 2])
    make_pair(str(bad), "no_pose", rng)
    write_mat(bad / "no_pose.mat", {"Shape_Para": np.zeros((199, 1)), "Exp_Para": np.zeros((29, 1))})
    make_pair(str(bad), "nan_shape", rng)
    shape = np.zeros((199, 1))
    shape[3] = np.nan
    write_mat(bad / "nan_shape.mat", {"Pose_Para": np.zeros((1, 7)), "Shape_Para": shape,
                                      "Exp_Para": np.zeros((29, 1))})
    out = tmp_path / "out"
    summary = run(pair_folder, out, jobs=2)
    assert summary.exit_code == 3
    assert summary.failed == 5 and summary.processed == 12
    failures = pd.read_csv(out / "failures.csv")
    assert sorted(failures["key"]) == ["BAD/corrupt_jpeg", "BAD/nan_shape", "BAD/no_pose",
                                       "BAD/truncated_mat", "BAD/zero_bytes"]
    by_key = dict(zip(failures["key"], failures["message"]))
    assert "corrupt_jpeg.jpg" in by_key["BAD/corrupt_jpeg"]
    assert "zero_bytes.jpg" in by_key["BAD/zero_bytes"] and "empty" in by_key["BAD/zero_bytes"]
    assert "truncated_mat.mat" in by_key["BAD/truncated_mat"]
    assert "Pose_Para" in by_key["BAD/no_pose"] and "missing" in by_key["BAD/no_pose"]
    assert "Shape_Para" in by_key["BAD/nan_shape"] and "NaN" in by_key["BAD/nan_shape"]
    assert set(failures["error_class"]) == {"InputError"}
    assert len(digest_outputs(out)) == 24
    manifest, meta = read_manifest(str(out / "manifest.parquet"))
    assert len(manifest) == 17 and (manifest["status"] == "ok").sum() == 12
    assert meta["stage"] == "pairs" and meta["config"]["data_root"] == str(pair_folder)
    assert (out / "manifest.csv").exists() and (out / "preview.png").exists()
    # Fixing nothing and rerunning retries only the failed items.
    again = run(pair_folder, out, jobs=1)
    assert (again.skipped, again.failed) == (12, 5)


def test_shards_partition_items_and_the_last_shard_finishes_the_whole_set(pair_folder, tmp_path):
    whole = run(pair_folder, tmp_path / "whole", jobs=1)
    expected = (tmp_path / "whole" / "finished.txt").read_text()
    assert expected.count("\n") == 11
    for order in ((0, 1, 2), (2, 1, 0)):
        out = tmp_path / f"s{order[0]}"
        parts = [run(pair_folder, out, jobs=1, shard=(i, 3)) for i in order]
        keys = [{r["key"] for r in p.records} for p in parts]
        assert all(keys) and sum(map(len, keys)) == 12 and set().union(*keys) == {r["key"] for r in whole.records}
        # finish() saw every shard's records: the list is complete whatever the order
        assert (out / "finished.txt").read_text() == expected
        assert digest_outputs(out) == digest_outputs(tmp_path / "whole")
        assert (out / "preview.png").read_bytes() == (tmp_path / "whole" / "preview.png").read_bytes()
        assert all((out / f"manifest.shard-{i}-of-3.parquet").exists() for i in range(3))
    # a single run after the shards finds every item done
    after = run(pair_folder, tmp_path / "s0", jobs=1)
    assert (after.processed, after.skipped) == (0, 12)


def test_seeds_and_shards_depend_only_on_keys():
    keys = [f"k{i}" for i in range(200)]
    assert item_seed(0, "s", "k1") == item_seed(0, "s", "k1") != item_seed(1, "s", "k1")
    for n in (1, 3, 7):
        owners = [[i for i in range(n) if in_shard(k, i, n)] for k in keys]
        assert all(len(o) == 1 for o in owners)


def test_limit_takes_first_keys(pair_folder, tmp_path):
    summary = run(pair_folder, tmp_path / "lim", jobs=1, limit=3)
    assert sorted(r["key"] for r in summary.records) == ["AFW/img_01", "AFW/img_03", "AFW/img_05"]


def test_missing_out_is_a_config_error(pair_folder):
    with pytest.raises(ConfigError):
        run_stage(PairStage, RunOptions(out="", quiet=True), cfg={"data_root": str(pair_folder)})


def run_batched(data_root, out, **kw):
    from runner_stages import BatchedPairStage

    return run_stage(BatchedPairStage, RunOptions(out=str(out), quiet=True, **kw),
                     cfg={"data_root": str(data_root)})


def test_batches_are_fixed_across_jobs_backends_shards_and_resume(pair_folder, tmp_path):
    reference = run_batched(pair_folder, tmp_path / "ref", jobs=1)
    assert reference.processed == 12
    expected = digest_outputs(tmp_path / "ref")
    run_batched(pair_folder, tmp_path / "loky", jobs=2)
    run_batched(pair_folder, tmp_path / "thr", jobs=2, backend="threading")
    for i in range(3):
        run_batched(pair_folder, tmp_path / "sharded", jobs=1, shard=(i, 3))
    for name in ("loky", "thr", "sharded"):
        assert digest_outputs(tmp_path / name) == expected, name
    # Losing one output redoes its whole batch (4 items), with identical bytes.
    os.unlink(tmp_path / "ref" / "HELEN" / "img_04_out.png")
    resumed = run_batched(pair_folder, tmp_path / "ref", jobs=1)
    assert (resumed.processed, resumed.skipped) == (4, 8)
    assert digest_outputs(tmp_path / "ref") == expected
    # The GEMM really is batch-dependent: computing one row alone need not match its batch row.
    from runner_stages import _basis

    shapes = np.stack([np.squeeze(read_mat_shape(pair_folder, k)) for k in
                       ("AFW/img_01", "AFW/img_03", "AFW/img_05", "AFW/img_07")]).astype(np.float32)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        batched, alone = (shapes @ _basis().T)[0], (shapes[:1] @ _basis().T)[0]
    assert not np.array_equal(batched, alone)


def read_mat_shape(root, key):
    from face3d_data.io import read_mat

    return read_mat(os.path.join(root, key + ".mat"))["Shape_Para"]


def test_bad_item_in_a_batch_fails_alone(pair_folder, tmp_path):
    (pair_folder / "AFW" / "img_03.jpg").write_bytes(b"")
    summary = run_batched(pair_folder, tmp_path / "out", jobs=2)
    assert summary.exit_code == 3 and summary.failed == 1 and summary.processed == 11
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    assert list(failures["key"]) == ["AFW/img_03"] and "img_03.jpg" in failures["message"][0]
