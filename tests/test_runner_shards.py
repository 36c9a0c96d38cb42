"""Sharded runs into one folder add up: after the last shard, in any order, the folder equals a
single run byte for byte (per-shard manifests and runner state excepted), for every stage."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from stage_sources import BESIDE, RECIPES, run_recipe, shared_sources

from pipelines.registry import STAGES, stage_class

ORDERS = [(0, 1, 2), (2, 0, 1)]


def outputs_digest(root):
    """{relative path: sha256} of every file but the per-shard manifests and the runner state."""
    result = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".face3d"]
        for f in files:
            if f.startswith(("manifest", "failures")):
                continue
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                result[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return result


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return shared_sources(tmp_path_factory)


def _has_finish(name):
    from pipelines.core import Stage

    return stage_class(name).finish is not Stage.finish


def test_every_registered_stage_has_a_recipe():
    assert set(RECIPES) == set(STAGES)


@pytest.mark.slow  # about a minute for all stages on two cores
@pytest.mark.parametrize("name", sorted(STAGES))
def test_shards_into_one_folder_equal_a_single_run(name, sources, tmp_path):
    reference = outputs_digest(sources[name])
    options = sources.options(name)
    keys_seen = []
    for order in ORDERS:
        out = tmp_path / ("sharded_" + "".join(map(str, order)))
        if name in BESIDE:
            shutil.copytree(sources[BESIDE[name]], out)
        keys = set()
        for i in order:
            summary = run_recipe(name, out, options, shard=(i, 3))
            assert summary.failed == 0
            keys |= {r["key"] for r in summary.records}
        keys_seen.append(keys)
        assert outputs_digest(out) == reference, (name, order)
    assert keys_seen[0] == keys_seen[1]
    if _has_finish(name):
        assert len(keys_seen[0]) > 1, "the recipe should give several items so shards differ"
