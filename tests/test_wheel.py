"""The wheel: built from a copy of the repository, it holds the packages, every stage's YAML defaults
and the compiled kernel, and nothing else (no tests, benchmarks, docs or licensed model files, even
when such files lie in the tree); unpacked on its own, it runs a stage from outside the repository.

.ci/wheel_check goes further (a fresh venv, dependencies from the index, the whole demo)."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: files a developer may have in the tree that must never reach a wheel (licensed or local data)
PLANTED = ["BFM/01_MorphableModel.mat", "BFM/model.npz", "datalist/train/landmarks/a.txt",
           "face3d_data/morphable/BFM.mat", "face3d_data/morphable/model.npz",
           "pipelines/configs/local_override.yml", "300W_LP/AFW/AFW_1_0.mat", "demo_out/synth/manifest.csv"]


def _source_files() -> list[str]:
    """The repository's files as a checkout has them: tracked plus untracked-not-ignored."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=REPO, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell the repository's files from build outputs")
    names = [n for n in os.fsdecode(listed).split("\0") if n]
    return [n for n in names if os.path.isfile(os.path.join(REPO, n))]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(wheel path, source copy) of a wheel built by pip from a copy of the repository."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    files = _source_files()
    for name in files:
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), target)
    for name in PLANTED:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"not to be shipped")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", ".",
                             "-w", str(base / "dist")], cwd=src, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (base / "dist").glob("face3d_data-*.whl")
    return wheel, src, files


@pytest.mark.slow  # pip builds the Cython kernel: about a minute on two cores
def test_wheel_holds_packages_configs_and_kernel_and_nothing_else(built):
    wheel, src, files = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        contents = {n: zf.read(n) for n in names if n.startswith("pipelines/configs/")}
    dist_info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    kernels = {n for n in names if n.startswith("face3d_data/_raster.")
               and any(n.endswith(s) for s in importlib.machinery.EXTENSION_SUFFIXES)}
    assert len(kernels) == 1, sorted(n for n in names if "_raster" in n)

    # every module of the two packages (the embedded model included: it is built from code) ...
    modules = {f for f in files if f.endswith(".py") and f.startswith(("face3d_data/", "pipelines/"))}
    assert "face3d_data/morphable/builtin.py" in modules
    assert modules | {"data_preparation.py"} <= names, sorted(modules - names)
    # ... every stage's YAML defaults, byte for byte ...
    configs = {f for f in files if f.startswith("pipelines/configs/") and f.endswith(".yaml")}
    from pipelines.registry import STAGES

    assert {f"pipelines/configs/{s}.yaml" for s in STAGES} <= configs
    assert set(contents) == configs
    for name in configs:
        assert contents[name] == (src / name).read_bytes(), name
    # ... and nothing else: no tests, benchmarks, docs, sources of the kernel, planted or licensed files
    others = names - modules - configs - kernels - dist_info - {"data_preparation.py"}
    assert not others, sorted(others)
    for name in names:
        top = name.split("/")[0]
        assert top not in ("tests", "benchmarks", "docs", "BFM", "datalist", "cython_ext", "300W_LP"), name
        assert not name.endswith((".mat", ".npz", ".npy", ".jpg", ".png", ".pyx", ".c")), name
        assert not os.path.basename(name).startswith(("test_", "conftest")), name
    assert not set(PLANTED) & names


@pytest.mark.slow
def test_unpacked_wheel_runs_a_stage_outside_the_repository(built, tmp_path):
    """The wheel's own files suffice: packaged YAML defaults (a wheel without them died with
    KeyError: 'count'), the compiled kernel, the embedded model."""
    wheel, _, _ = built
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = subprocess.run(
        [sys.executable, "-c",
         "import face3d_data, face3d_data._raster, pipelines.core.config as c;"
         "print(face3d_data.__file__); print(face3d_data._raster.__file__); print(c.CONFIG_DIR);"
         "print(c.build_config('synth_300wlp').count)"],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    *paths, count = probe.stdout.split()
    for path in paths:
        assert os.path.realpath(path).startswith(os.path.realpath(site) + os.sep), paths
    assert int(count) == 100
    out = tmp_path / "uv"
    result = subprocess.run([sys.executable, "-m", "pipelines.run", "synth_300wlp", "--count", "2",
                             "--image_size", "64", "--jobs", "1", "--quiet", "--out", str(out)],
                            cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    images = sorted(p.name for p in out.rglob("*.jpg"))
    labels = sorted(p.name for p in out.rglob("*.mat") if p.parent.name != "landmarks")
    assert len(images) == 2 and [n[:-4] for n in images] == [n[:-4] for n in labels], (images, labels)
    assert (out / "manifest.parquet").is_file() and (out / "preview.png").is_file()
