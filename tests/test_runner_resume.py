"""Resume is keyed on content: config, seed, package version, asset file contents and each
input file's (path, size, mtime_ns)."""

from __future__ import annotations

import os

import pytest
from runner_stages import TYPED_YAML, TypedPairStage

import face3d_data
import pipelines.core.config as config_module
import pipelines.registry as registry
from face3d_data.io import read_mat, write_mat
from pipelines.core import RunOptions, build_config, run_stage


@pytest.fixture
def typed(tmp_path, monkeypatch, pair_folder):
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "pairs_typed.yaml").write_text(TYPED_YAML)
    monkeypatch.setattr(config_module, "CONFIG_DIR", str(folder))
    monkeypatch.setitem(registry.STAGES, "pairs_typed", "runner_stages")
    model = tmp_path / "model.npz"
    model.write_bytes(b"model version 1")

    def run(**kw):
        cfg = build_config(TypedPairStage, explicit={"data_root": str(pair_folder), "model": str(model)})
        return run_stage(TypedPairStage, RunOptions(out=str(tmp_path / "out"), jobs=1, quiet=True, **kw),
                         cfg=cfg)

    return run, model


def test_rebuilt_model_file_at_the_same_path_redoes_items(typed):
    run, model = typed
    assert run().processed == 12
    again = run()
    assert (again.processed, again.skipped) == (0, 12)
    model.write_bytes(b"model version 2")  # same path, new content
    rebuilt = run()
    assert (rebuilt.processed, rebuilt.skipped) == (12, 0)
    assert run().skipped == 12


def test_same_size_rewrite_of_the_model_redoes_items(typed):
    run, model = typed
    run()
    st = os.stat(model)
    model.write_bytes(b"model version 9")  # same size
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert run().processed == 12


def test_touching_or_changing_one_input_redoes_that_item_only(typed, pair_folder):
    run, _ = typed
    run()
    image = pair_folder / "AFW" / "img_03.jpg"
    st = os.stat(image)
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))
    again = run()
    assert (again.processed, again.skipped) == (1, 11)
    mat = pair_folder / "HELEN" / "img_04.mat"
    fields = read_mat(mat)
    fields["Pose_Para"] = fields["Pose_Para"] + 1.0
    write_mat(mat, {k: v for k, v in fields.items() if not k.startswith("__")})
    third = run()
    assert (third.processed, third.skipped, third.failed) == (1, 11, 0)


def test_package_version_is_part_of_the_fingerprint(typed, monkeypatch):
    run, _ = typed
    run()
    monkeypatch.setattr(face3d_data, "__version__", face3d_data.__version__ + ".post1")
    assert run().processed == 12


def test_asset_hash_is_cached_by_size_and_mtime(typed, monkeypatch):
    import pipelines.core.fingerprint as fp

    run, model = typed
    run()
    calls = []
    real = fp._sha256_file
    monkeypatch.setattr(fp, "_sha256_file", lambda p: calls.append(p) or real(p))
    run()
    assert calls == [], "an unchanged model is not re-read"
    model.write_bytes(b"model version 3")
    run()
    assert len(calls) == 1
