"""Rules every stage of this package follows: thin glue (no stage imports another stage or a
private library name), typed options, a bad --model is one ConfigError before any item."""

from __future__ import annotations

import ast
import os

import numpy as np
import pytest
from conftest import make_pair, run_named

from face3d_data.errors import ConfigError
from face3d_data.morphable.testing import random_model
from pipelines.core import StageOptions, build_config
from pipelines.registry import STAGES, stage_class

STAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pipelines", "stages")
STAGE_FILES = sorted(f for f in os.listdir(STAGE_DIR) if f.endswith(".py") and f != "__init__.py")


@pytest.mark.parametrize("filename", STAGE_FILES)
def test_stages_import_no_stage_and_no_private_name(filename):
    tree = ast.parse(open(os.path.join(STAGE_DIR, filename), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module == "__future__":
                continue
            assert not module.startswith("pipelines.stages"), f"{filename} imports {module}"
            assert not any(part.startswith("_") for part in module.split(".")), f"{filename}: {module}"
            for alias in node.names:
                assert not alias.name.startswith("_"), f"{filename} imports private {module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("pipelines.stages"), f"{filename} imports {alias.name}"


MINE = ["synth_300wlp", "build_model", "fit_3dmm", "rotate_300wlp", "uv_assets", "posmap",
        "validate_posmap", "pncc", "depth"]


@pytest.mark.parametrize("name", MINE)
def test_stage_options_are_typed_and_classes_named_alike(name):
    cls = stage_class(name)
    assert name in STAGES and cls.__name__.endswith("Stage")
    cfg = build_config(name)
    assert isinstance(cfg, StageOptions) and isinstance(cfg, cls.Options)
    for key in cfg:
        assert getattr(cfg, key) == cfg[key]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    for i in range(3):
        make_pair(str(root / "AFW"), f"AFW_{i}_1_0", rng)
    return root


def _inputs(name, dataset, tmp_path):
    if name == "fit_3dmm":
        return {"img_folder": str(dataset / "AFW"), "detect": False}
    if name in ("synth_300wlp", "uv_assets"):
        return {"count": 2} if name == "synth_300wlp" else {}
    return {"data_root": str(dataset)}


@pytest.mark.parametrize("name", ["synth_300wlp", "fit_3dmm", "rotate_300wlp", "uv_assets", "posmap",
                                  "pncc", "depth"])
def test_a_bad_model_is_one_config_error_before_any_item(name, dataset, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"^model: cannot load .*missing\.npz"):
        run_named(name, out, model=str(tmp_path / "missing.npz"), **_inputs(name, dataset, tmp_path))
    assert not any(p.suffix in (".parquet", ".csv") for p in out.rglob("*")) if out.exists() else True


def test_a_model_lacking_what_the_stage_needs_is_a_config_error(dataset, tmp_path):
    bare = random_model(200, 3, 2, seed=0, with_uv=False)       # no texture, no UVs
    path = str(tmp_path / "bare.npz")
    bare.save(path)
    with pytest.raises(ConfigError, match="model: .*has no texture for synthesis"):
        run_named("synth_300wlp", tmp_path / "s", model=path, count=2)
    with pytest.raises(ConfigError, match="model: .*has no uv"):
        run_named("posmap", tmp_path / "p", model=path, data_root=str(dataset))
