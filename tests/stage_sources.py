"""Single-run output folders of every registered stage, built on demand from small recipes (shared
by the tests that run every stage: shards, refused output folders, bad models)."""

from __future__ import annotations

import shutil

from pipelines.core import RunOptions, build_config, run_stage
from pipelines.demo import write_demo_photos
from pipelines.registry import stage_class

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

def run_recipe(name, out, options, shard=(0, 1)):
    cfg = build_config(name, explicit=options)
    return run_stage(stage_class(name), RunOptions(out=str(out), jobs=1, backend="threading",
                                                   quiet=True, shard=shard), cfg=cfg)


class Sources:
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
        summary = run_recipe(name, out, self.options(name))
        assert summary.failed == 0, summary.records
        return str(out)

    def options(self, name):
        return {k: (v.format_map(self) if isinstance(v, str) else v) for k, v in RECIPES[name].items()}



_SHARED: dict = {}


def shared_sources(tmp_path_factory) -> Sources:
    """One :class:`Sources` per test session, so that every module needing the stages' folders
    builds each of them once."""
    key = str(tmp_path_factory.getbasetemp())
    if key not in _SHARED:
        _SHARED[key] = Sources(tmp_path_factory.mktemp("stage_sources"))
    return _SHARED[key]
