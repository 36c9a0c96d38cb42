"""Sharded runs into one folder add up: after the last shard, in any order, the folder equals a
single run byte for byte (per-shard manifests and runner state excepted), for every stage."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest

from pipelines.core import RunOptions, build_config, run_stage
from pipelines.demo import write_demo_photos
from pipelines.registry import STAGES, stage_class

# stage -> options; "{name}" is the single-run output folder of stage `name` (or of a source:
# "photos", the demo photos; "scans", synthetic scans). Every registered stage needs a recipe.
FAST_NICP = {"fit_model": False, "stiffness": "50", "landmark_weights": "1", "distance_caps": "0.05",
             "max_inner": 1, "max_now_median_mm": 5.0}
RECIPES = {
    "synth_300wlp": {"count": 7, "image_size": 64, "views_per_identity": 1},
    "rotate_300wlp": {"data_root": "{synth_300wlp}", "angles": [30], "model": "builtin"},
    "profile_300wlp": {"data_root": "{synth_300wlp}", "yaws": [60], "write_sheets": False},
    "uv_assets": {"resolution": 16},
    "build_model": {},
    "posmap": {"data_root": "{synth_300wlp}", "resolution": 32},
    "validate_posmap": {"posmap_dir": "{posmap}"},
    "pncc": {"data_root": "{synth_300wlp}"},
    "depth": {"data_root": "{synth_300wlp}"},
    "parsing": {"data_root": "{synth_300wlp}"},
    "data_preparation": {"vis_every": 1},
    "fit_3dmm": {"img_folder": "{data_preparation}", "iterations": 2},
    "register_scans": {"scans": "{scans}", **FAST_NICP},
    "evaluate_meshes": {"pred": "{register_scans}", "scans": "{scans}"},
    "augment_views": {"registered": "{register_scans}", "yaws": "0:60:30", "pitches": "0", "size": 48},
}
#: stages whose --out is a copy of this source (they write beside their inputs by design)
BESIDE = {"data_preparation": "photos"}

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


def _run(name, out, options, shard=(0, 1)):
    cfg = build_config(name, explicit=options)
    return run_stage(stage_class(name), RunOptions(out=str(out), jobs=1, backend="threading",
                                                   quiet=True, shard=shard), cfg=cfg)


class _Sources:
    """Single-run output folders of the stages (and the raw sources), built on demand."""

    def __init__(self, base):
        self.base, self.folders = base, {}

    def __getitem__(self, name):
        if name not in self.folders:
            self.folders[name] = self._build(name)
        return self.folders[name]

    def _build(self, name):
        out = self.base / name
        if name == "photos":
            write_demo_photos(str(out))
            return str(out)
        if name == "scans":
            from face3d_data.registration.synthetic import write_synthetic_scans

            write_synthetic_scans(str(out), count=2)
            return str(out)
        if name in BESIDE:
            shutil.copytree(self[BESIDE[name]], out)
        summary = _run(name, out, self.options(name))
        assert summary.failed == 0, summary.records
        return str(out)

    def options(self, name):
        return {k: (v.format_map(self) if isinstance(v, str) else v) for k, v in RECIPES[name].items()}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return _Sources(tmp_path_factory.mktemp("shards"))


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
            summary = _run(name, out, options, shard=(i, 3))
            assert summary.failed == 0
            keys |= {r["key"] for r in summary.records}
        keys_seen.append(keys)
        assert outputs_digest(out) == reference, (name, order)
    assert keys_seen[0] == keys_seen[1]
    if _has_finish(name):
        assert len(keys_seen[0]) > 1, "the recipe should give several items so shards differ"
