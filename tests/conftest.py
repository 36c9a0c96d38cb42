"""Shared test helpers: running one stage in-process, small 300W-LP-format folders built in the
real file formats. (Test models live in :mod:`face3d_data.morphable.testing`.)"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # runner_stages for worker processes too

from face3d_data.io import write_image, write_mat  # noqa: E402


def run_named(stage: str, out, *, jobs: int = 1, backend: str = "threading", **explicit):
    """Run registered stage ``stage`` into ``out`` with options ``explicit`` (quietly, in this
    process by default); returns the runner's summary. ConfigError propagates."""
    from pipelines.core import RunOptions, build_config, run_stage
    from pipelines.registry import stage_class

    cfg = build_config(stage, explicit=explicit)
    return run_stage(stage_class(stage), RunOptions(out=str(out), jobs=jobs, quiet=True, backend=backend),
                     cfg=cfg)


def make_pair(folder, name, rng, size=48):
    """Write ``name.jpg`` + ``name.mat`` with 300W-LP fields (random but valid)."""
    os.makedirs(folder, exist_ok=True)
    image = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    write_image(os.path.join(folder, name + ".jpg"), image)
    write_mat(os.path.join(folder, name + ".mat"), {
        "Pose_Para": rng.normal(size=(1, 7)).astype(np.float32),
        "Shape_Para": rng.normal(size=(199, 1)),
        "Exp_Para": rng.normal(size=(29, 1)),
        "pt2d": rng.uniform(1, size, size=(2, 68)),
    })


@pytest.fixture
def pair_folder(tmp_path):
    """A folder of 12 good pairs in two sub-folders."""
    rng = np.random.default_rng(7)
    root = tmp_path / "data"
    for i in range(12):
        make_pair(str(root / ("AFW" if i % 2 else "HELEN")), f"img_{i:02d}", rng)
    return root
