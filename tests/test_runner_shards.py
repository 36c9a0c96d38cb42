"""Sharded runs into one folder add up: after the last shard, in any order, the folder equals a
single run byte for byte (per-shard manifests and runner state excepted), for every stage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from pipelines.core import RunOptions, build_config, run_stage
from pipelines.demo import write_demo_photos
from pipelines.registry import STAGES, stage_class

# stage -> (options, the earlier stage whose output folder "{src}" refers to)
RECIPES = {
    "synth_300wlp": ({"count": 7, "image_size": 64, "views_per_identity": 1}, None),
    "rotate_300wlp": ({"data_root": "{src}", "angles": [30], "model": "builtin"}, "synth_300wlp"),
    "uv_assets": ({"resolution": 16}, None),
    "build_model": ({}, None),
    "posmap": ({"data_root": "{src}", "resolution": 32}, "synth_300wlp"),
    "validate_posmap": ({"posmap_dir": "{src}"}, "posmap"),
    "pncc": ({"data_root": "{src}"}, "synth_300wlp"),
    "depth": ({"data_root": "{src}"}, "synth_300wlp"),
    "parsing": ({"data_root": "{src}"}, "synth_300wlp"),
    "data_preparation": ({"vis_every": 1}, "photos"),
    "fit_3dmm": ({"img_folder": "{src}", "iterations": 2}, "data_preparation"),
}

ORDERS = [(0, 1, 2), (2, 0, 1)]

# Timings a stage writes into an output file (not reproducible by nature; removed before comparing).
# build_model's load_seconds belongs in the manifest (request to the stage owner).
VOLATILE = {"model_report.json": ("load_seconds",)}


def _content(path, name):
    with open(path, "rb") as fh:
        data = fh.read()
    if name in VOLATILE:
        report = json.loads(data)
        for key in VOLATILE[name]:
            report.pop(key, None)
        data = json.dumps(report, sort_keys=True).encode()
    return data


def outputs_digest(root):
    """{relative path: sha256} of every file but the per-shard manifests and the runner state."""
    result = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".face3d"]
        for f in files:
            if f.startswith(("manifest", "failures")):
                continue
            p = os.path.join(dirpath, f)
            result[os.path.relpath(p, root)] = hashlib.sha256(_content(p, f)).hexdigest()
    return result


def _run(name, out, options, shard=(0, 1)):
    cfg = build_config(name, explicit=options)
    return run_stage(stage_class(name), RunOptions(out=str(out), jobs=1, backend="threading",
                                                   quiet=True, shard=shard), cfg=cfg)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Single-run output folders of every stage, built in chain order on demand."""
    base = tmp_path_factory.mktemp("shards")
    folders: dict[str, str] = {}

    def get(name):
        if name in folders:
            return folders[name]
        if name == "photos":
            folders[name] = str(base / "photos")
            write_demo_photos(folders[name])
            return folders[name]
        options, src = RECIPES[name]
        out = base / name
        if name == "data_preparation":  # writes beside its images: a copy of the photos
            shutil.copytree(get("photos"), out)
        resolved = {k: (v.format(src=get(src)) if isinstance(v, str) else v) for k, v in options.items()}
        summary = _run(name, out, resolved)
        assert summary.failed == 0, summary.records
        folders[name] = str(out)
        return folders[name]

    return get


def _has_finish(name):
    from pipelines.core import Stage

    return stage_class(name).finish is not Stage.finish


def test_every_registered_stage_has_a_recipe():
    assert set(RECIPES) == set(STAGES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STAGES))
def test_shards_into_one_folder_equal_a_single_run(name, sources, tmp_path):
    single = sources(name)
    reference = outputs_digest(single)
    options, src = RECIPES[name]
    resolved = {k: (v.format(src=sources(src)) if isinstance(v, str) else v) for k, v in options.items()}
    keys_seen = []
    for order in ORDERS:
        out = tmp_path / ("sharded_" + "".join(map(str, order)))
        if name == "data_preparation":
            shutil.copytree(sources("photos"), out)
        keys = set()
        for i in order:
            summary = _run(name, out, resolved, shard=(i, 3))
            assert summary.failed == 0
            keys |= {r["key"] for r in summary.records}
        keys_seen.append(keys)
        assert outputs_digest(out) == reference, (name, order)
    assert keys_seen[0] == keys_seen[1]
    if _has_finish(name):
        assert len(keys_seen[0]) > 1, "the recipe should give several items so shards differ"
