"""Inputs are never destroyed: an --out that overlaps the inputs is refused (exit 2), and an
output may never replace an input file."""

from __future__ import annotations

import hashlib
import os

import pytest
from runner_stages import PairStage

from face3d_data.errors import ConfigError
from pipelines.core import Item, RunOptions, run_stage
from pipelines.run import main


def tree_digest(root):
    """{relative path: sha256} of every file under ``root`` (hidden state included)."""
    result = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                result[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return result


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs") / "syn"
    assert main(["synth_300wlp", "--count", "3", "--image_size", "96", "--out", str(root),
                 "--jobs", "1", "--quiet"]) == 0
    return root


@pytest.fixture(scope="module")
def posmap_out(synth_root):
    out = synth_root.parent / "pm"
    assert main(["posmap", "--data-root", str(synth_root), "--out", str(out), "--resolution", "32",
                 "--jobs", "1", "--quiet"]) == 0
    return out


def _refused(capsys, args, root):
    before = tree_digest(root)
    code = main(args + ["--jobs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert tree_digest(root) == before
    return err


def test_posmap_into_its_data_root_is_refused(synth_root, capsys):
    err = _refused(capsys, ["posmap", "--data-root", str(synth_root), "--out", str(synth_root),
                            "--resolution", "32"], synth_root)
    assert "--out" in err and str(synth_root) in err


class DeclaredPairStage(PairStage):
    """PairStage that declares its input folder option."""

    name = "pairs_declared"
    input_options = ("data_root",)


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_out_overlapping_a_declared_input_folder_is_refused(pair_folder, where):
    out = {"same": pair_folder, "inside": pair_folder / "new", "parent": pair_folder.parent}[where]
    before = tree_digest(pair_folder)
    with pytest.raises(ConfigError, match="choose a separate folder") as info:
        run_stage(DeclaredPairStage, RunOptions(out=str(out), jobs=1, quiet=True),
                  cfg={"data_root": str(pair_folder)})
    assert {"same": "is the input", "inside": "is inside the input",
            "parent": "contains the input"}[where] in str(info.value)
    assert tree_digest(pair_folder) == before and not (pair_folder / "new").exists()
    # a sibling folder is fine
    ok = run_stage(DeclaredPairStage, RunOptions(out=str(pair_folder.parent / "sibling"), jobs=1, quiet=True),
                   cfg={"data_root": str(pair_folder)})
    assert ok.exit_code == 0


def test_symlinked_out_pointing_at_the_inputs_is_refused(pair_folder, tmp_path):
    link = tmp_path / "link"
    os.symlink(pair_folder, link)
    with pytest.raises(ConfigError):
        run_stage(PairStage, RunOptions(out=str(link), jobs=1, quiet=True), cfg={"data_root": str(pair_folder)})


def test_validate_posmap_into_the_posmap_folder_is_refused(posmap_out, capsys):
    _refused(capsys, ["validate_posmap", "--posmap_dir", str(posmap_out), "--out", str(posmap_out)],
             posmap_out)


def test_rotate_into_its_data_root_is_refused(synth_root, capsys):
    err = _refused(capsys, ["rotate_300wlp", "--data-root", str(synth_root), "--out", str(synth_root),
                            "--angles", "30"], synth_root)
    assert "--out" in err
    assert not any("_angle_" in f for f in tree_digest(synth_root))


def test_a_folder_holding_another_stages_run_is_refused(synth_root, posmap_out, capsys):
    fresh = synth_root.parent / "syn_copy_src"
    err = _refused(capsys, ["synth_300wlp", "--count", "2", "--image_size", "64", "--out", str(posmap_out)],
                   posmap_out)
    assert "posmap" in err
    assert not fresh.exists()


def test_items_whose_inputs_lie_in_out_are_refused_even_without_declared_options(pair_folder):
    # PairStage declares no input_options: the item-level check still sees the overlap
    before = tree_digest(pair_folder)
    with pytest.raises(ConfigError, match="holds the input"):
        run_stage(PairStage, RunOptions(out=str(pair_folder / "AFW"), jobs=1, quiet=True),
                  cfg={"data_root": str(pair_folder)})
    assert tree_digest(pair_folder) == before


class BesideStage(PairStage):
    """Writes beside its inputs by design, but one item tries to overwrite its own input."""

    name = "beside"
    writes_beside_inputs = True

    def list_items(self, cfg, ctx):
        return [Item(it.key, it.inputs) for it in super().list_items(cfg, ctx) if it.key.startswith("AFW")]

    def process(self, item, cfg, ctx):
        if item.key.endswith("01"):  # names its own image as an output
            with open(ctx.path(item.key + ".jpg"), "wb") as f:
                f.write(b"overwritten")
            return {"outputs": [item.key + ".jpg"]}
        with open(ctx.path(item.key + "_note.txt"), "w") as f:
            f.write(item.key)
        return {"outputs": [item.key + "_note.txt"]}


def test_an_output_may_never_replace_an_input_file(pair_folder):
    before = tree_digest(pair_folder)
    summary = run_stage(BesideStage, RunOptions(out=str(pair_folder), jobs=1, quiet=True),
                        cfg={"data_root": str(pair_folder)})
    assert summary.failed == 1 and summary.processed == 5
    failure = [r for r in summary.records if r["status"] == "failed"][0]
    assert failure["key"] == "AFW/img_01" and "replace its input" in failure["message"]
    after = tree_digest(pair_folder)
    assert all(after[k] == v for k, v in before.items())
