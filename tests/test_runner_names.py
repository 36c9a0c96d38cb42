"""File names with whitespace or invalid UTF-8 never abort a run: datalists percent-encode them,
manifests and failure reports escape them, seeds and shards hash their raw bytes."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from face3d_data.io import read_datalist, write_datalist
from face3d_data.io.datalist import escape_path, unescape_path
from pipelines.core import read_manifest
from pipelines.core.seeding import in_shard, item_seed
from pipelines.run import main

BAD = os.fsdecode(b"caf\xe9_\xff")  # Latin-1 bytes: not UTF-8


@pytest.mark.parametrize("name, encoded", [
    ("a b.jpg", "a%20b.jpg"), ("100%.jpg", "100%25.jpg"), ("tab\there", "tab%09here"),
    ("ideo\u3000space", "ideo%E3%80%80space"), ("ünï.jpg", "ünï.jpg"), (BAD, "caf%E9_%FF"),
    ("%20", "%2520"), ("plain/x.jpg", "plain/x.jpg")])
def test_percent_encoding_round_trips(name, encoded):
    assert escape_path(name) == encoded
    assert unescape_path(encoded) == name


def test_datalist_round_trip_with_awkward_names(tmp_path):
    root = tmp_path / "root"
    names = ["a b/x y.jpg", "100%.npy", "line\u2028sep.jpg", BAD + ".jpg", "ok.jpg"]
    rows = [(os.path.join(str(root), n), os.path.join(str(root), "ok.jpg")) for n in names]
    assert write_datalist(tmp_path / "l.txt", rows, root) == len(names)
    text = (tmp_path / "l.txt").read_bytes().decode("utf-8")  # always valid UTF-8
    assert text.splitlines()[0] == "a%20b/x%20y.jpg ok.jpg" and len(text.split("\n")) == len(names) + 1
    back = read_datalist(tmp_path / "l.txt", root, columns=2)
    assert [os.path.normpath(r[0]) for r in back] == [os.path.normpath(r[0]) for r in rows]


def test_seeds_and_shards_accept_non_utf8_keys():
    assert item_seed(0, "s", BAD) == item_seed(0, "s", BAD) != item_seed(0, "s", "caf")
    assert sum(in_shard(BAD, i, 3) for i in range(3)) == 1


def _rename_sample(root, old, new):
    for rel_old, rel_new in ((f"{old}.jpg", f"{new}.jpg"), (f"{old}.mat", f"{new}.mat"),
                             (f"landmarks/{old}_pts.mat", f"landmarks/{new}_pts.mat")):
        src = os.path.join(root, rel_old)
        if os.path.exists(src):
            os.rename(src, os.path.join(root, rel_new))


def test_posmap_over_awkward_names_finishes_and_writes_its_manifest(tmp_path, capsys):
    data = str(tmp_path / "syn")
    assert main(["synth_300wlp", "--count", "4", "--image_size", "64", "--out", data, "--jobs", "1",
                 "--quiet"]) == 0
    _rename_sample(data, "synth_000001", "a b")
    _rename_sample(data, "synth_000002", BAD)
    out = str(tmp_path / "pm")
    code = main(["posmap", "--data-root", data, "--out", out, "--resolution", "32", "--jobs", "1",
                 "--quiet", "--set", "splits={train: 1.0}"])
    err = capsys.readouterr().err
    assert code in (0, 3), err
    assert "Traceback" not in err
    manifest, _ = read_manifest(os.path.join(out, "manifest.parquet"))
    keys = set(manifest["key"])
    assert "a b" in keys and len(manifest) == 4
    ok = manifest[manifest["status"] == "ok"]
    assert "a b" in set(ok["key"])
    pd.read_csv(os.path.join(out, "manifest.csv"))  # readable UTF-8
    rows = read_datalist(os.path.join(out, "datalist", "posmap_train.txt"), out, columns=2)
    assert len(rows) == len(ok)
    assert all(os.path.exists(p) for row in rows for p in row)
    assert any(os.path.basename(row[0]).startswith("a b") for row in rows)
    text = open(os.path.join(out, "datalist", "posmap_train.txt"), encoding="utf-8").read()
    assert "a%20b" in text and " b" not in text.replace(" a%20b", "")
    if code == 3:  # the non-UTF-8 sample may only be a failures row naming it
        failures = pd.read_csv(os.path.join(out, "failures.csv"))
        assert len(failures) == 1 and "caf" in failures["key"][0]


def test_non_utf8_names_become_rows_in_manifest_and_failures(pair_folder, tmp_path):
    from runner_stages import PairStage

    from pipelines.core import RunOptions, run_stage

    folder = os.fsencode(str(pair_folder / "AFW"))
    os.rename(os.path.join(folder, b"img_01.jpg"), os.path.join(folder, b"caf\xe9.jpg"))
    os.rename(os.path.join(folder, b"img_01.mat"), os.path.join(folder, b"caf\xe9.mat"))
    with open(os.path.join(folder, b"bad\xff.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    os.link(os.path.join(folder, b"img_03.mat"), os.path.join(folder, b"bad\xff.mat"))
    out = tmp_path / "out"
    summary = run_stage(PairStage, RunOptions(out=str(out), jobs=2, quiet=True),
                        cfg={"data_root": str(pair_folder)})
    assert (summary.processed, summary.failed) == (12, 1)
    failures = pd.read_csv(out / "failures.csv")
    assert failures["key"].tolist() == ["AFW/bad\\xff"] and "bad\\xff.jpg" in failures["message"][0]
    manifest, _ = read_manifest(str(out / "manifest.parquet"))
    assert "AFW/caf\\xe9" in set(manifest["key"])
    assert os.path.exists(os.path.join(os.fsencode(str(out)), b"AFW", b"caf\xe9_out.png"))
    again = run_stage(PairStage, RunOptions(out=str(out), jobs=1, quiet=True), cfg={"data_root": str(pair_folder)})
    assert (again.skipped, again.failed) == (12, 1)
