"""The command line: help lists every stage, usage errors exit 2 with a message, no traceback."""

import subprocess
import sys
import types

import pytest
import yaml

from face3d_data.errors import ConfigError
from pipelines.core.config import build_config, coerce, load_options
from pipelines.core.options import field_specs, is_flag, is_list
from pipelines.registry import STAGES, stage_class
from pipelines.run import main as run_main


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


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_help_names_every_option_with_its_default(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main([name, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in load_options(name):
        assert f"--{option.key} " in text or f"--{option.key}," in text or f"--{option.key}\n" in text, \
            f"{name} --help does not name --{option.key}"
        assert f"(default: {option.default!r})" in " ".join(text.split()), (name, option.key)
    assert "--shard" in text and "--backend" in text


@pytest.mark.parametrize("name", sorted(STAGES))
def test_unknown_option_is_exit_2_with_one_line(name, tmp_path, capsys):
    for argv in ([name, "--out", str(tmp_path), "--no-such-option", "1"],
                 [name, "--out", str(tmp_path), "--set", "no_such_option=1"]):
        code = run_main(argv) if "--set" in argv else _exit_code(run_main, argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (argv, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert "no_such_option" in lines[0].replace("-", "_"), err
        assert "Traceback" not in err
    assert not any(tmp_path.iterdir()), "a usage error wrote into --out"


def _exit_code(fn, argv):
    with pytest.raises(SystemExit) as exit_info:
        fn(argv)
    return exit_info.value.code


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


def _layer_values(spec, default):
    """Three valid values of an option of type ``spec`` for the --config, --set and CLI layers, each
    differing from the layer below it (the first from the YAML default), or None for a type this test
    cannot write as text on every layer (mappings)."""
    kind = spec[0]
    if kind == "union":
        inner = [s for s in spec[1] if s != ("none",)]
        return _layer_values(inner[0], None if default is None else default) if len(inner) == 1 else None
    if kind == "bool":
        return [not default, bool(default), not default]
    if kind == "literal":
        values = list(spec[1])
        start = values.index(default) if default in values else -1
        return [values[(start + i) % len(values)] for i in (1, 2, 3)]
    if kind == "int":
        base = default if isinstance(default, int) else 0
        return [base + 1, base + 2, base + 3]
    if kind == "float":
        base = float(default) if isinstance(default, (int, float)) else 0.0
        return [base + 0.25, base + 0.5, base + 0.75]
    if kind == "str":
        return [f"layer-{i}-{default}" for i in (1, 2, 3)]
    if kind == "list":
        if spec[1] not in (("float",), ("int",)):
            return None
        return [[float(i), float(i) + 0.5] for i in (1, 2, 3)]
    if kind == "tuple":
        if any(s not in (("float",), ("int",)) for s in spec[1]):
            return None
        return [[float(i + j) for j in range(len(spec[1]))] for i in (1, 2, 3)]
    return None


def _as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _cli_args(key, spec, value):
    flag = f"--{key.replace('_', '-')}" if "_" in key else f"--{key}"
    if is_flag(spec):
        return [flag if value else f"--no-{key.replace('_', '-')}"]
    if is_list(spec):
        return [flag, *[str(v) for v in value]]
    return [flag, _as_text(value)]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_option_precedence_cli_over_set_over_config_over_yaml(name, tmp_path, monkeypatch):
    """Through the real command line of every stage: each option's value comes from the YAML default,
    then a --config file, then --set, then the stage's own flag, the later layer winning."""
    import pipelines.core

    seen = {}

    def fake_run_stage(stage, options, cfg=None, config_file=None, sets=None, explicit=None):
        seen["cfg"] = build_config(stage, config_file, sets, explicit)
        return types.SimpleNamespace(exit_code=0)

    monkeypatch.setattr(pipelines.core, "run_stage", fake_run_stage)
    specs = field_specs(stage_class(name).Options)
    defaults = {o.key: o.default for o in load_options(name)}
    layers = {k: v for k, v in ((k, _layer_values(specs[k], d)) for k, d in defaults.items()) if v}
    assert layers, f"{name}: no option this test can layer"

    def effective(*argv):
        assert run_main([name, "--out", str(tmp_path / "out"), *argv]) == 0
        return seen["cfg"]

    def plain(value):
        return list(value) if isinstance(value, tuple) else value

    cfg = effective()
    assert {k: plain(cfg[k]) for k in defaults} == defaults
    config_file = tmp_path / "override.yaml"
    config_file.write_text(yaml.safe_dump({k: v[0] for k, v in layers.items()}))
    sets = [a for k, v in layers.items() for a in ("--set", f"{k}={_as_text(v[1])}")]
    flags = [a for k, v in layers.items() for a in _cli_args(k, specs[k], v[2])]
    for depth, argv in enumerate((["--config", str(config_file)], ["--config", str(config_file), *sets],
                                  ["--config", str(config_file), *sets, *flags])):
        cfg = effective(*argv)
        for key, values in layers.items():
            assert plain(cfg[key]) == values[depth], (name, key, depth, cfg[key])
        untouched = set(defaults) - set(layers)
        assert {k: plain(cfg[k]) for k in untouched} == {k: defaults[k] for k in untouched}
    # one layer alone also wins over the default, and the CLI flag wins over --config without --set
    cfg = effective("--config", str(config_file), *flags)
    assert all(plain(cfg[k]) == v[2] for k, v in layers.items())
    assert not (tmp_path / "out").exists()


def test_config_coercion():
    name = sorted(STAGES)[0]
    with pytest.raises(ConfigError, match="unknown option"):
        build_config(name, sets=["nope=1"])
    assert coerce("a", "15,30,-45", [0]) == [15, 30, -45]
    assert coerce("b", "no", True) is False
    assert coerce("c", "2.5", 1.0) == 2.5
    with pytest.raises(ConfigError, match="integer"):
        coerce("d", "x", 3)
