"""What the runner's worker processes load and check: real paths resolved once per folder (equal to
``os.path.realpath``), an output never replacing an input (also through a symbolic link inside
--out), workers started ahead of the tasks sharing one ``setup`` per process, and worker imports
free of the main process's manifest writer (pandas, pyarrow)."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys

import pytest
from runner_stages import PairStage

from face3d_data.errors import ConfigError
from pipelines.core import RunOptions, run_stage
from pipelines.core.stage import RealPaths

HERE = os.path.dirname(os.path.abspath(__file__))


def _sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def link_tree(tmp_path):
    """a/ (file f, link l -> f, dangling link, link loop), b -> a, c -> b/sub (missing)."""
    a = tmp_path / "a"
    a.mkdir()
    (a / "f").write_text("x")
    (a / "sub").mkdir()
    (a / "sub" / "g").write_text("y")
    os.symlink("f", a / "l")
    os.symlink("nowhere", a / "dangling")
    os.symlink("loop2", a / "loop1")
    os.symlink("loop1", a / "loop2")
    os.symlink(a, tmp_path / "b")
    os.symlink(tmp_path / "b" / "sub", tmp_path / "c")
    os.symlink("../a/sub", a / "up")
    return tmp_path


REL = ["a/f", "b/f", "b/l", "a/l", "a/missing", "b/missing", "b/missing/deeper", "a/../a/f", "b/../f",
       "b/sub/../f", "c/g", "c/../f", "a/up/g", "a/up/../f", "a/dangling", "a/loop1", "a/loop1/x", "a/",
       "b/.", "b/..", "a//f", "b/sub/", "a/sub/g", "c/missing"]


def test_real_paths_equal_os_realpath(link_tree, monkeypatch):
    shared = RealPaths()  # one instance for all paths: its folder cache must not leak between them
    for rel in REL:
        path = str(link_tree / rel) if not rel.endswith("/") else str(link_tree / rel) + "/"
        assert RealPaths()(path) == os.path.realpath(path), rel
        assert shared(path) == os.path.realpath(path), rel
    for rel in ("a/f", "b/f", "a/sub/g", "c/g"):  # existing plain files, as _record calls it
        path = str(link_tree / rel)
        assert shared(path, lstat_done=True) == os.path.realpath(path), rel
    monkeypatch.chdir(link_tree / "b")
    for rel in ("f", "l", "sub/g", "../b/f", "missing", ".", "", "sub/../f"):
        assert shared(rel) == os.path.realpath(rel), rel
    assert shared(os.fsencode(str(link_tree / "b" / "f"))) == os.path.realpath(os.fsencode(str(link_tree / "b" / "f")))


class ThroughLinkStage(PairStage):
    """Not a writes-beside stage; its --out holds a symbolic link to the input folder AFW, through
    which item 01 names its input image (refused by ``ctx.path``) and item 03 overwrites its
    input .mat without ``ctx.path`` (caught after the fact by the runner's output check)."""

    name = "through_link"

    def list_items(self, cfg, ctx):
        return [it for it in super().list_items(cfg, ctx) if it.key.startswith("AFW/")]

    def process(self, item, cfg, ctx):
        if item.key.endswith("01"):
            with open(ctx.path(item.key + ".jpg"), "wb") as f:
                f.write(b"overwritten")
            return {"outputs": [item.key + ".jpg"]}
        if item.key.endswith("03"):
            path = os.path.join(ctx.out_dir, item.key + ".mat")
            with open(path, "wb") as f:
                f.write(b"overwritten")
            return {"outputs": [item.key + ".mat"]}
        with open(ctx.path(item.key + "_note.txt"), "w") as f:
            f.write(item.key)
        return {"outputs": [item.key + "_note.txt"]}


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_output_through_a_link_in_out_never_replaces_an_input(pair_folder, tmp_path, jobs):
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(pair_folder / "AFW", out / "AFW")
    image = pair_folder / "AFW" / "img_01.jpg"
    before = _sha(image)
    summary = run_stage(ThroughLinkStage, RunOptions(out=str(out), jobs=jobs, quiet=True),
                        cfg={"data_root": str(pair_folder)})
    failed = {r["key"]: r["message"] for r in summary.records if r["status"] == "failed"}
    assert sorted(failed) == ["AFW/img_01", "AFW/img_03"] and summary.processed == 4
    assert "would replace its input" in failed["AFW/img_01"] and str(out / "AFW" / "img_01.jpg") in failed["AFW/img_01"]
    assert "replaced its input" in failed["AFW/img_03"]
    assert _sha(image) == before


class Liar(PairStage):
    """Item 02 also reports a file it did not write, item 04 a dangling link it made."""

    name = "liar"

    def process(self, item, cfg, ctx):
        result = super().process(item, cfg, ctx)
        if item.key.endswith("02"):
            return dict(result, outputs=result["outputs"] + [item.key + "_never.txt"])
        if item.key.endswith("04"):
            os.symlink("nowhere", ctx.path(item.key + "_link.txt"))
            return dict(result, outputs=result["outputs"] + [item.key + "_link.txt"])
        return result


def test_a_reported_output_that_is_missing_fails_its_item(pair_folder, tmp_path):
    summary = run_stage(Liar, RunOptions(out=str(tmp_path / "o"), jobs=1, quiet=True),
                        cfg={"data_root": str(pair_folder)})
    failed = [r for r in summary.records if r["status"] == "failed"]
    assert [r["key"] for r in failed] == ["HELEN/img_02", "HELEN/img_04"]
    assert "did not write" in failed[0]["message"] and "_never.txt" in failed[0]["message"]
    assert "did not write" in failed[1]["message"] and "_link.txt" in failed[1]["message"]


class SetupLogStage(PairStage):
    """Appends its process id to ``cfg['log']`` in every ``setup`` (a model load); each item
    reports the process that ran it and the one whose setup it used."""

    name = "setup_log"

    def setup(self, cfg):
        if cfg.get("broken"):
            raise ValueError("not a model")
        with open(cfg["log"], "a") as f:
            f.write(f"{os.getpid()}\n")
        return os.getpid()

    def process(self, item, cfg, ctx):
        result = super().process(item, cfg, ctx)
        return dict(result, pid=os.getpid(), setup_pid=ctx.resources)


def _setup_pids(log) -> list[int]:
    return [int(line) for line in open(log).read().split()]


def test_workers_started_ahead_share_one_setup_per_process(pair_folder, tmp_path):
    log = tmp_path / "setup.log"
    cfg = {"data_root": str(pair_folder), "log": str(log)}
    broken = dict(cfg, broken=True)
    with pytest.raises(ConfigError, match="cannot load the stage's resources"):
        run_stage(SetupLogStage, RunOptions(out=str(tmp_path / "bad"), jobs=2, quiet=True), cfg=broken)
    assert not (tmp_path / "bad").exists()  # nothing written, not even the folder

    first = run_stage(SetupLogStage, RunOptions(out=str(tmp_path / "o1"), jobs=2, quiet=True), cfg=cfg)
    assert first.exit_code == 0 and first.processed == 12
    pids = _setup_pids(log)
    assert len(pids) == len(set(pids))  # one setup per process: warm-up and batches share it
    workers = {r["pid"] for r in first.records}
    assert os.getpid() in pids and workers <= set(pids) and os.getpid() not in workers
    assert all(r["setup_pid"] == r["pid"] for r in first.records)

    # a second run of the same configuration reuses the workers and what they loaded
    second = run_stage(SetupLogStage, RunOptions(out=str(tmp_path / "o2"), jobs=2, quiet=True), cfg=cfg)
    assert second.exit_code == 0
    again = _setup_pids(log)
    assert len(again) == len(set(again))
    serial = run_stage(SetupLogStage, RunOptions(out=str(tmp_path / "o3"), jobs=1, quiet=True), cfg=cfg)
    for name in ("AFW/img_01_out.png", "HELEN/img_02_pose.npy"):
        assert _sha(tmp_path / "o1" / name) == _sha(tmp_path / "o2" / name) == _sha(tmp_path / "o3" / name)
    assert serial.exit_code == 0


def test_worker_imports_leave_out_the_manifest_writer():
    # what a worker process imports: the executor and a stage module (all registered ones here)
    from pipelines.registry import STAGES

    code = ("import sys, importlib\n"
            "import pipelines.core.executor\n"
            f"for m in {sorted(STAGES.values())!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in ('pandas', 'pyarrow', 'pipelines.core.runner', 'tqdm') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(HERE))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_package_names_resolve_to_their_modules():
    import pipelines.core as core

    for name in core.__all__:
        value = getattr(core, name)
        assert value is getattr(importlib.import_module(core._WHERE[name]), name)
        assert name in dir(core)
    with pytest.raises(AttributeError):
        core.no_such_name  # noqa: B018
