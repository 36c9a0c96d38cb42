"""The trainer framework without a model: configuration, sampling and seeding rules."""

from __future__ import annotations

import numpy as np
import pytest

from face3d_data.errors import ConfigError
from face3d_data.train.loop import EpochBatches, resolve_amp, resolve_config
from face3d_data.train.registry import task_class
from face3d_data.train.task import COMMON_DEFAULTS, RUN_CONTROL_KEYS, sample_seed
from pipelines.core.config import load_options
from pipelines.train import build_config, task_options


def test_common_defaults_mirror_the_yaml_and_every_key_has_help():
    options = load_options("train_common")
    assert {o.key: o.default for o in options} == COMMON_DEFAULTS
    assert all(o.help for o in options)
    assert RUN_CONTROL_KEYS <= set(COMMON_DEFAULTS)
    assert all(o.help for o in load_options("train_prnet"))


def test_task_yaml_overrides_common_defaults_and_flags_win():
    options = task_options("prnet")
    assert options["epochs"].default == 30 and options["workers"].default == 2
    cfg = build_config(options, None, ["lr=0.5", "aug_scale_range=0.8,1.3"], {"lr": "0.25"})
    assert cfg["lr"] == 0.25 and cfg["aug_scale_range"] == [0.8, 1.3]
    with pytest.raises(ConfigError):
        build_config(options, None, ["nope=1"], {})


def test_epoch_batches_shard_a_seeded_permutation_and_resume_mid_epoch():
    n, batch = 23, 6
    single = list(EpochBatches(n, batch, 1, 0, seed=5, epoch=2))
    assert len(single) == n // batch
    ranks = [list(EpochBatches(n, batch, 3, r, seed=5, epoch=2)) for r in range(3)]
    for b, whole in enumerate(single):   # the 3 ranks' slices make the same global batch
        assert [i for r in range(3) for i in ranks[r][b]] == whole
    flat = [i for b in single for i, _ in b]
    assert len(set(flat)) == len(flat) and all(e == 2 for b in single for _, e in b)
    assert list(EpochBatches(n, batch, 1, 0, seed=5, epoch=2, start=2)) == single[2:]
    assert list(EpochBatches(n, batch, 1, 0, seed=5, epoch=3)) != single


def test_sample_seed_depends_on_seed_epoch_and_key_only():
    s = sample_seed(1, 0, "a/b")
    assert s == sample_seed(1, 0, "a/b") and 0 <= s < 2 ** 63
    assert len({s, sample_seed(2, 0, "a/b"), sample_seed(1, 1, "a/b"), sample_seed(1, 0, "a/c")}) == 4


def test_config_checks_and_amp_resolution():
    import torch

    with pytest.raises(ConfigError):
        resolve_config({"batch_size": 0})
    with pytest.raises(ConfigError):
        resolve_config({"optimizer": "sgd"})
    assert resolve_amp("auto", torch.device("cpu")) is None
    assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16
    with pytest.raises(ConfigError):
        resolve_amp("fp16", torch.device("cpu"))
    assert resolve_amp("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(ConfigError):
        task_class("nosuch")
    assert np.isfinite(resolve_config({})["lr"])
