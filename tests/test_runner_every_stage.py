"""Rules of issue 10 checked on every registered stage through its command line, on real inputs
(the folders of tests/stage_sources.py): an --out that is or lies inside an input folder is refused
with exit 2 and one line, leaving the inputs byte for byte; a bad --model (missing or corrupt file)
is one exit-2 line from the stage's setup, before any item and before any manifest is written."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import shutil

import pytest
from stage_sources import BESIDE, RECIPES, run_recipe, shared_sources

from face3d_data.morphable import builtin_model
from pipelines.registry import STAGES, stage_class
from pipelines.run import main

#: which source folder feeds an input option (build_model's options name files: see _input_for)
SOURCE_OF = {"data_root": "synth_300wlp", "img_folder": "photos", "scans": "scans", "pred": "register_scans",
             "registered": "register_scans", "posmap_dir": "posmap", "backgrounds": "photos"}

INPUT_CASES = [(name, option) for name in sorted(STAGES) for option in stage_class(name).input_options]
#: (name, option, where): --out is the input folder itself, or a folder inside it (build_model's
#: inputs are files, so only "the folder holding the input file" applies there)
REFUSAL_CASES = [(name, option, where) for name, option in INPUT_CASES
                 for where in (("same",) if name == "build_model" else ("same", "inside"))]
MODEL_CASES = [name for name in sorted(STAGES) if "model" in stage_class(name).asset_options
               or name in BESIDE]


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    return shared_sources(tmp_path_factory)


def tree_digest(root):
    """{relative path: sha256} of every file under ``root`` (hidden state included), and every folder."""
    result = {}
    for dirpath, dirs, files in os.walk(root):
        result.update({os.path.relpath(os.path.join(dirpath, d), root) + "/": "dir" for d in dirs})
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                result[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return result


def _cli(name, options):
    args = [name]
    for key, value in options.items():
        flag = "--" + key
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            args += [flag, *map(str, value)]
        else:
            args += [flag, str(value)]
    return args + ["--jobs", "1", "--quiet"]


def _one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_every_stage_with_input_folders_is_covered():
    # a stage that reads inputs declares them (the runner's guard needs that); the exceptions
    # read only the model (uv_assets) or write beside their inputs by design (data_preparation)
    assert {name for name, _ in INPUT_CASES} == set(STAGES) - {"uv_assets", "data_preparation"}
    assert all(option in SOURCE_OF or name == "build_model" for name, option in INPUT_CASES)


@pytest.mark.slow  # builds every stage's inputs once (shared with the shard test)
@pytest.mark.parametrize(("name", "option", "where"), REFUSAL_CASES)
def test_out_at_or_inside_an_input_is_refused_with_exit_2(name, option, where, sources, tmp_path, capsys):
    options = sources.options(name)
    if name == "build_model":  # its inputs are files: --out is the folder holding one of them
        folder = tmp_path / "model_files"
        folder.mkdir()
        (folder / "input.mat").write_bytes(b"a model file")
        options[option] = str(folder / "input.mat")
    else:
        folder = tmp_path / "input"
        shutil.copytree(sources[SOURCE_OF[option]], folder)
        options[option] = str(folder)
    before = tree_digest(folder)
    out = folder if where == "same" else folder / "out"
    options_with_out = {**options, "out": str(out)}
    assert main(_cli(name, options_with_out)) == 2
    line = _one_error_line(capsys)
    assert f"--out {out}" in line and "the input" in line, line
    assert tree_digest(folder) == before, "a refused run changed its inputs"


def _model_option(name):
    return "quality_model" if name in BESIDE else "model"


@pytest.mark.slow  # builds the stages' inputs once (shared with the shard test)
@pytest.mark.parametrize("kind", ["missing", "corrupt"])
@pytest.mark.parametrize("name", MODEL_CASES)
def test_a_bad_model_is_one_exit_2_line_before_any_item(name, kind, sources, tmp_path, capsys):
    options = sources.options(name)
    out = tmp_path / "out"
    if name in BESIDE:
        shutil.copytree(sources[BESIDE[name]], out)
    before = tree_digest(out) if out.exists() else {}
    model = tmp_path / "model.npz"
    if kind == "corrupt":
        model.write_bytes(b"PK\x03\x04 this is not a model")
    options[_model_option(name)] = str(model)
    assert main(_cli(name, {**options, "out": str(out)})) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {_model_option(name)}: ") and "model.npz" in line, line
    written = set(tree_digest(out)) - set(before) if out.exists() else set()
    assert not {f for f in written if not f.startswith(".face3d")}, sorted(written)


#: options naming files a stage reads besides its items (a model, weights, a class table, backgrounds)
FILE_OPTIONS = {"model", "quality_model", "fan_weights", "classes", "backgrounds"}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_file_option_is_content_keyed(name):
    """Resume compares the content of asset files: every option naming such a file is an asset."""
    cls = stage_class(name)
    keys = set(stage_class(name).Options.__dataclass_fields__)
    assert keys & FILE_OPTIONS <= set(cls.asset_options) | set(cls.input_options), name


@pytest.mark.slow
@pytest.mark.parametrize("name", ["uv_assets", "posmap"])
def test_a_model_rebuilt_at_the_same_path_redoes_a_real_stage(name, sources, tmp_path):
    """A --model file rewritten in place (same path, new content) redoes every item, and the outputs
    then equal a fresh run with the new model; an untouched rerun skips everything."""
    model = builtin_model()
    path = tmp_path / "model.npz"
    model.save(path)
    options = {**sources.options(name), "model": str(path)}
    first = run_recipe(name, tmp_path / "out", options)
    assert first.failed == 0 and first.processed > 0
    again = run_recipe(name, tmp_path / "out", options)
    assert (again.processed, again.skipped) == (0, first.processed)
    model.mean = model.mean * 1.01  # a rebuilt model: slightly larger face, same path
    model.save(path)
    rebuilt = run_recipe(name, tmp_path / "out", options)
    assert (rebuilt.processed, rebuilt.skipped) == (first.processed, 0)
    fresh = run_recipe(name, tmp_path / "fresh", options)
    digest = {k: v for k, v in tree_digest(tmp_path / "out").items() if not k.startswith((".face3d", "manifest"))}
    fresh_digest = {k: v for k, v in tree_digest(tmp_path / "fresh").items()
                    if not k.startswith((".face3d", "manifest"))}
    assert digest == fresh_digest and fresh.processed == first.processed


def _label_files(root):
    from face3d_data.io import read_mat

    for path in sorted(root.rglob("*.mat")):
        if path.parent.name != "landmarks":
            fields = read_mat(str(path))
            if "roi" in fields:
                yield path, fields


#: stage -> the stored points its roi is the square box of (300W-LP: pt2d; profiling: pt3d_68)
ROI_POINTS = {"synth_300wlp": "pt2d", "fit_3dmm": "pt2d", "augment_views": "pt2d", "profile_300wlp": "pt3d_68"}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ROI_POINTS))
def test_roi_is_stored_in_the_frame_of_pt2d_by_every_stage(name, sources):
    """Every stage writes roi 1-based like pt2d / pt3d_68 (fit_3dmm wrote it 0-based: one pixel off).
    The expectation is computed in the stored frame alone: the square box of the stored points."""
    import numpy as np

    errors = []
    for _path, fields in _label_files(pathlib.Path(sources[name])):
        points = np.asarray(fields[ROI_POINTS[name]], np.float64)[:2].T
        points = points[(points > 0).all(axis=1)]  # -1 = missing
        lo, hi = points.min(axis=0), points.max(axis=0)
        centre, half = (lo + hi) / 2, (hi - lo).max() / 2
        box = np.concatenate([centre - half, centre + half])
        scale = 1.0 if name != "fit_3dmm" else float(sources.options(name).get("roi_scale", 1.0))
        assert scale == 1.0
        errors.append(np.asarray(fields["roi"], np.float64).ravel() - box)
    assert len(errors) >= 2, f"{name}: too few label files to judge"
    errors = np.array(errors)
    assert np.abs(errors).max() <= 0.5 + 1e-3, (name, errors)   # only the rounding to int16
    assert abs(errors.mean()) < 0.3, (name, errors.mean())      # an off-by-one reads about -1 or +1


@pytest.mark.slow
def test_rotated_roi_stays_in_the_stored_frame(sources, tmp_path):
    """A half turn about the image centre maps the stored roi [x1, y1, x2, y2] to
    [w + 1 - x2, h + 1 - y2, w + 1 - x1, h + 1 - y1] in the 1-based frame (a 0-based reading would
    land 2 px off)."""
    import numpy as np

    out = tmp_path / "half_turn"
    summary = run_recipe("rotate_300wlp", out, {**sources.options("rotate_300wlp"), "angles": [180]})
    assert summary.failed == 0 and summary.processed > 0
    size = RECIPES["synth_300wlp"]["image_size"]
    source = {p.name: f for p, f in _label_files(pathlib.Path(sources["synth_300wlp"]))}
    rotated = list(_label_files(out))
    assert len(rotated) == len(source)
    for path, fields in rotated:
        original = source[path.name.replace("_angle_180", "")]
        x1, y1, x2, y2 = np.asarray(original["roi"], np.float64).ravel()
        expected = [size + 1 - x2, size + 1 - y2, size + 1 - x1, size + 1 - y1]
        got = np.asarray(fields["roi"], np.float64).ravel()
        # the stage takes the integer box around the turned corners (floor/ceil), so float noise
        # of the turn may widen a side by one pixel; a frame error would shift the whole box by 2
        grow = np.concatenate([np.subtract(expected[:2], got[:2]), got[2:] - expected[2:]])
        assert ((grow >= 0) & (grow <= 1)).all(), (path.name, got, expected)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_stage_declares_typed_options_and_follows_the_class_pattern(name):
    from pipelines.core import StageOptions, build_config

    cls = stage_class(name)
    assert cls.__name__.endswith("Stage") and cls.__name__ != "Stage", cls.__name__
    cfg = build_config(name)
    assert isinstance(cfg, StageOptions) and type(cfg) is cls.Options
    assert dataclasses.is_dataclass(cfg) and dataclasses.fields(cfg)
