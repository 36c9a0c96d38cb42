"""Stage ``build_model``: licensed BFM files -> the compact native model (replaces face3d's generate.m).

One item (``model``). Loads ``--bfm`` with :func:`face3d_data.morphable.load_model` (format
detected from the content; ``--exp``/``--info`` for BFM2009), attaches ``--uv`` (a 53,490-row
3DMMasSTN ``BFM_UV.mat`` is trimmed with ``trimIndex`` and gets face3d's 3-vertex fix), applies an
optional ``--subset``, checks the vertex count, writes ``<output>`` (``.npz``) and optionally a
face3d-compatible ``BFM.mat``, re-loads the ``.npz`` to time it, and writes ``model_report.json``
(counts, extents, basis orthonormality). Without ``--bfm`` it exports the builtin model. The
preview is the mean and ±3σ of the first modes. See BFM/README.md.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import write_mat, write_text
from pipelines.core import Item, Stage


def read_vertex_subset(path) -> np.ndarray:
    """0-based vertex ids from a ``.mat`` (``idx``/``trimIndex``/``indices``, 1-based) or ``.npy``/``.txt`` (0-based)."""
    from face3d_data.io import load_npy, read_mat

    if str(path).endswith(".mat"):
        data = read_mat(path)
        for key in ("idx", "trimIndex", "indices", "index"):
            if key in data:
                return np.asarray(data[key]).ravel().astype(np.int64) - 1
        raise InputError(path, f"no idx/trimIndex/indices variable (found {sorted(data)})")
    if str(path).endswith(".npy"):
        return np.asarray(load_npy(path)).ravel().astype(np.int64)
    try:
        return np.loadtxt(path, dtype=np.int64).ravel()
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a list of vertex ids ({exc})") from None


def attach_uv(model, uv_path, info_path):
    """Return ``model`` with UVs from ``uv_path``: as-is when the rows match, else trimmed + fixed."""
    from face3d_data.morphable.loaders import _read_mat, _with, fix_bfm_uv, load_uv

    uv = load_uv(uv_path)
    if len(uv) == model.n_vertices:
        return _with(model, uv=uv)
    if info_path is None:
        raise InputError(uv_path, f"'UV' has {len(uv)} rows, the model {model.n_vertices}; "
                                  f"pass --info model_info.mat to trim a 53,490-row file")
    trim = np.asarray(_read_mat(info_path)["trimIndex"]).ravel().astype(np.int64) - 1
    if trim.max() >= len(uv) or len(trim) != model.n_vertices:
        raise InputError(uv_path, f"cannot trim {len(uv)} UV rows with a {len(trim)}-entry trimIndex "
                                  f"to the model's {model.n_vertices} vertices")
    uv = uv[trim]
    if model.n_vertices == 53215 and model.triangles is not None:  # the real BFM: face3d's fix
        uv = fix_bfm_uv(uv, model.triangles)
    return _with(model, uv=uv)


class BuildModel(Stage):
    name = "build_model"
    summary = "Convert BFM files (BFM2009, face3d, Deep3D, 3DDFA) into the native .npz model."
    preview_count = 1

    def check_config(self, cfg):
        for key in ("bfm", "exp", "info", "uv", "subset"):
            if cfg.get(key) and not os.path.exists(cfg[key]):
                raise ConfigError(f"{key}: {cfg[key]!r} does not exist")
        if not str(cfg["output"]).endswith(".npz"):
            raise ConfigError(f"output: expected a .npz file name, got {cfg['output']!r}")

    def list_items(self, cfg, ctx):
        inputs = {k: str(cfg[k]) for k in ("bfm", "exp", "info", "uv", "subset") if cfg.get(k)}
        return [Item(key="model", inputs=inputs)]

    def process(self, item, cfg, ctx):
        from face3d_data.morphable import MorphableModel, builtin_model, load_model
        from face3d_data.morphable.checks import model_report
        from face3d_data.morphable.loaders import face3d_bfm_fields

        if cfg.get("bfm"):
            model = load_model(cfg["bfm"], exp=cfg.get("exp"), info=cfg.get("info"))
        else:
            model = builtin_model()
        if cfg.get("uv"):
            model = attach_uv(model, cfg["uv"], cfg.get("info"))
        if cfg.get("subset"):
            try:
                model = model.subset(read_vertex_subset(cfg["subset"]))
            except ValueError as exc:
                raise InputError(cfg["subset"], str(exc)) from None
        expected = cfg.get("expected_vertices")
        if expected is not None and model.n_vertices != int(expected):
            raise InputError(cfg.get("bfm") or "builtin",
                             f"model has {model.n_vertices} vertices, expected {int(expected)}")
        if cfg.get("name"):
            model.name = str(cfg["name"])
        out = ctx.path(cfg["output"])
        model.save(out)
        started = time.perf_counter()
        MorphableModel.load(out)
        load_s = time.perf_counter() - started
        outputs = [cfg["output"]]
        if cfg.get("face3d_mat"):
            write_mat(ctx.path("BFM.mat"), face3d_bfm_fields(model))
            outputs.append("BFM.mat")
        report = model_report(model)
        report["load_seconds"] = load_s
        write_text(ctx.path("model_report.json"), json.dumps(report, indent=2) + "\n")
        outputs.append("model_report.json")
        return {"outputs": outputs, "n_vertices": model.n_vertices, "n_shape": model.n_shape,
                "n_exp": model.n_exp, "n_tex": model.n_tex, "load_seconds": load_s,
                "max_shape_orthonormality_error": max(report["shape_basis"].values())}

    def preview(self, record, cfg, ctx):
        from face3d_data.morphable import MorphableModel
        from face3d_data.morphable.picture import mode_sheet

        model = MorphableModel.load(ctx.path(record["outputs"][0]))
        if model.triangles is None:
            return None
        return mode_sheet(model, n_shape=3, n_exp=3, size=128)
