"""The command line: help lists every stage, usage errors exit 2 with a message, no traceback."""

import subprocess
import sys

import pytest

from face3d_data.errors import ConfigError
from pipelines.core.config import build_config, coerce, load_options
from pipelines.registry import STAGES, stage_class


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipelines.run", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_help_lists_every_stage():
    result = cli("--help")
    assert result.returncode == 0
    for name in list(STAGES) + ["demo"]:
        assert f"  {name} " in result.stdout
    assert "unavailable" not in result.stdout


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_has_documented_config(name):
    cls = stage_class(name)
    assert cls.summary
    options = load_options(name)
    assert options, f"pipelines/configs/{name}.yaml is missing or empty"
    undocumented = [o.key for o in options if not o.help]
    assert not undocumented, f"pipelines/configs/{name}.yaml: options without a help comment: {undocumented}"


def test_stage_help_shows_options_with_defaults():
    name = sorted(STAGES)[0]
    result = cli(name, "--help")
    assert result.returncode == 0
    for option in load_options(name):
        assert f"--{option.key}" in result.stdout
    assert "--shard" in result.stdout and "--backend" in result.stdout


def test_usage_errors_exit_2_without_traceback(tmp_path):
    unknown = cli("no_such_stage", "--out", str(tmp_path))
    assert unknown.returncode == 2 and "unknown stage" in unknown.stderr
    name = sorted(STAGES)[0]
    bad_set = cli(name, "--out", str(tmp_path), "--set", "no_such_option=1")
    assert bad_set.returncode == 2 and "unknown option 'no_such_option'" in bad_set.stderr
    bad_shard = cli(name, "--out", str(tmp_path), "--shard", "3/2")
    assert bad_shard.returncode == 2 and "--shard" in bad_shard.stderr
    for r in (unknown, bad_set, bad_shard):
        assert "Traceback" not in r.stderr


def test_config_precedence_and_coercion(tmp_path):
    name = sorted(STAGES)[0]
    options = load_options(name)
    key, default = options[0].key, options[0].default
    cfg = build_config(name)
    assert cfg[key] == default and set(cfg) == {o.key for o in options}
    with pytest.raises(ConfigError, match="unknown option"):
        build_config(name, sets=["nope=1"])
    assert coerce("a", "15,30,-45", [0]) == [15, 30, -45]
    assert coerce("b", "no", True) is False
    assert coerce("c", "2.5", 1.0) == 2.5
    with pytest.raises(ConfigError, match="integer"):
        coerce("d", "x", 3)
