"""Typed stage options: conversion by field type, YAML/dataclass agreement, attribute access."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle

import pytest
from runner_stages import TYPED_YAML, TypedOptions, TypedPairStage

import pipelines.core.config as config_module
import pipelines.registry as registry
from face3d_data.errors import ConfigError
from pipelines.core import RunOptions, StageOptions, build_config, run_stage
from pipelines.core.options import convert, field_specs, make_options
from pipelines.core.stage import Context


@pytest.fixture
def typed_configs(tmp_path, monkeypatch):
    """A config folder holding pairs_typed.yaml, registered as a stage for the CLI."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "pairs_typed.yaml").write_text(TYPED_YAML)
    monkeypatch.setattr(config_module, "CONFIG_DIR", str(folder))
    monkeypatch.setitem(registry.STAGES, "pairs_typed", "runner_stages")
    return folder


def test_defaults_become_a_typed_frozen_instance(typed_configs):
    cfg = build_config(TypedPairStage)
    assert isinstance(cfg, TypedOptions)
    assert cfg.scale == 1.5 and isinstance(cfg.scale, float)
    assert cfg.count == 3 and cfg.flip is True and cfg.data_root is None
    assert cfg.size_jitter == [0.9, 1.1] and cfg.mode == "fast"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.scale = 2.0
    # dict-style reads keep unconverted code working
    assert cfg["count"] == 3 and cfg.get("nope", 7) == 7 and "tags" in cfg
    assert dict(cfg)["mode"] == "fast" and json.loads(json.dumps(cfg.to_dict()))["levels"] == {}
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    # by name, through the registry
    assert build_config("pairs_typed") == cfg


def test_text_is_converted_by_field_type(typed_configs):
    cfg = build_config(TypedPairStage, sets=["scale=2", "count=5", "flip=no", "size_jitter=0.8,1.2",
                                             "tags=x", "levels={eyes: 3}", "data_root=/d"],
                       explicit={"mode": "exact", "model": "m.npz"})
    assert cfg.scale == 2.0 and isinstance(cfg.scale, float)
    assert (cfg.count, cfg.flip, cfg.size_jitter, cfg.tags) == (5, False, [0.8, 1.2], ["x"])
    assert cfg.levels == {"eyes": 3} and cfg.data_root == "/d" and cfg.mode == "exact"
    assert build_config(TypedPairStage, sets=["data_root=null"]).data_root is None


@pytest.mark.parametrize("setting, message", [
    ("size_jitter=a,b", "option 'size_jitter' expects a list of numbers"),
    ("scale=nan", "option 'scale' expects a number, got 'nan' (NaN and infinity are not allowed)"),
    ("scale=inf", "NaN and infinity"),
    ("size_jitter=1,-inf", "option 'size_jitter'"),
    ("count=2.5", "option 'count' expects an integer"),
    ("flip=maybe", "option 'flip' expects true/false"),
    ("mode=slow", "option 'mode' expects one of 'fast', 'exact'"),
    ("levels=[1]", "option 'levels' expects a mapping"),
    ("no_such=1", "unknown option 'no_such'"),
])
def test_bad_text_is_a_config_error_naming_the_option(typed_configs, setting, message):
    with pytest.raises(ConfigError) as info:
        build_config(TypedPairStage, sets=[setting])
    assert message in str(info.value)


def test_config_file_values_are_checked_not_reinterpreted(typed_configs, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("scale: 3\ntags: [p, q]\n")
    cfg = build_config(TypedPairStage, config_file=str(good))
    assert cfg.scale == 3.0 and cfg.tags == ["p", "q"]
    for text, key in (("count: true\n", "count"), ("scale: .nan\n", "scale"),
                      ("size_jitter: 0.5\n", "size_jitter"), ("flip: 1\n", "flip")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=f"option '{key}'"):
            build_config(TypedPairStage, config_file=str(bad))


def test_yaml_and_dataclass_must_agree(typed_configs):
    (typed_configs / "pairs_typed.yaml").write_text(TYPED_YAML + "extra: 1   # not a field\n")
    with pytest.raises(ConfigError, match=r"keys not declared in TypedOptions: \['extra'\]"):
        build_config(TypedPairStage)
    (typed_configs / "pairs_typed.yaml").write_text(TYPED_YAML.replace("count: 3", "# count: 3"))
    with pytest.raises(ConfigError, match=r"missing from the YAML: \['count'\]"):
        build_config(TypedPairStage)
    (typed_configs / "pairs_typed.yaml").write_text(TYPED_YAML.replace("scale: 1.5", "scale: nan_x"))
    with pytest.raises(ConfigError, match="option 'scale'"):
        build_config(TypedPairStage)


def test_missing_yaml_of_a_registered_stage_is_an_error(typed_configs):
    os.unlink(typed_configs / "pairs_typed.yaml")
    with pytest.raises(ConfigError, match="pairs_typed.yaml is missing"):
        build_config("pairs_typed")
    with pytest.raises(ConfigError, match="is missing"):
        build_config(TypedPairStage)


def test_field_default_must_match_the_yaml():
    @dataclasses.dataclass(frozen=True)
    class WithDefault(StageOptions):
        count: int = 4

    from pipelines.core.options import check_defaults

    check_defaults(WithDefault, {"count": 4}, "x.yaml")
    with pytest.raises(ConfigError, match="differs"):
        check_defaults(WithDefault, {"count": 5}, "x.yaml")


def test_type_specs_from_strings_and_objects():
    from typing import Literal, Optional

    @dataclasses.dataclass(frozen=True)
    class Real(StageOptions):  # annotations as objects (no __future__ import in effect here)
        a: Optional[int]
        b: Literal["x", "y"]

    Real.__dataclass_fields__["a"].type = Optional[int]
    Real.__dataclass_fields__["b"].type = Literal["x", "y"]
    specs = field_specs(Real)
    assert specs == {"a": ("union", [("int",), ("none",)]), "b": ("literal", ("x", "y"))}
    assert convert("a", "null", specs["a"], True) is None
    assert convert("a", "4", specs["a"], True) == 4
    assert field_specs(TypedOptions)["size_jitter"] == ("list", ("float",))
    assert convert("t", "1,2", ("tuple", [("int",), ("float",)]), True) == [1, 2.0]
    with pytest.raises(ConfigError, match="2 values"):
        convert("t", "1,2,3", ("tuple", [("int",), ("float",)]), True)


def test_the_stage_receives_the_instance_and_a_dict_is_converted(typed_configs, pair_folder, tmp_path):
    summary = run_stage(TypedPairStage, RunOptions(out=str(tmp_path / "o"), jobs=1, quiet=True),
                        cfg={**build_config(TypedPairStage).to_dict(), "data_root": str(pair_folder)})
    assert summary.exit_code == 0 and summary.processed == 12
    with pytest.raises(ConfigError, match="option 'sleep'"):
        make_options(TypedOptions, {**build_config(TypedPairStage).to_dict(), "sleep": float("inf")})


def test_cli_bad_values_exit_2_with_one_line(typed_configs, pair_folder, tmp_path, capsys):
    from pipelines.run import main

    out = str(tmp_path / "o")
    for args, needle in ((["--set", "size_jitter=a,b"], "option 'size_jitter'"),
                         (["--scale", "nan"], "option 'scale'"),
                         (["--size-jitter", "1", "inf"], "option 'size_jitter'"),
                         (["--mode", "slow"], "option 'mode'")):
        code = main(["pairs_typed", "--out", out, "--data_root", str(pair_folder), *args])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not os.path.exists(os.path.join(out, "manifest.parquet"))
    code = main(["pairs_typed", "--out", out, "--data_root", str(pair_folder), "--no-flip",
                 "--size-jitter", "0.5", "2", "--quiet", "--jobs", "1"])
    assert code == 0


def test_context_seeds_have_one_meaning_each():
    ctx = Context(stage="s", out_dir="/o", run_seed=4, rng=None, item_seed=99)
    assert (ctx.run_seed, ctx.item_seed) == (4, 99)
    assert not hasattr(ctx, "seed")


def test_available_cores_respects_affinity(monkeypatch):
    from pipelines.core import available_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert available_cores() == 3
