"""Stage ``build_model``: licensed BFM files -> the compact native model (replaces face3d's generate.m).

One item (``model``). Loads ``--bfm`` with :func:`face3d_data.morphable.load_model` (format
detected from the content; ``--exp``/``--info`` for BFM2009), attaches ``--uv`` (a 53,490-row
3DMMasSTN ``BFM_UV.mat`` is trimmed with ``trimIndex`` and gets face3d's 3-vertex fix), applies an
optional ``--subset``, checks the vertex count, writes ``<output>`` (``.npz``) and optionally a
face3d-compatible ``BFM.mat``, re-loads the ``.npz`` to time it (the ``load_seconds`` manifest
column: timings live in the manifest only, so every output file is reproducible), and writes
``model_report.json`` (counts, extents, basis orthonormality). Without ``--bfm`` it exports the
builtin model. The preview is the mean and ±3σ of the first modes. See BFM/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import write_mat, write_text
from face3d_data.morphable import MorphableModel, builtin_model, load_model
from face3d_data.morphable.build import attach_uv, read_vertex_subset
from face3d_data.morphable.checks import model_report
from face3d_data.morphable.loaders import face3d_bfm_fields
from face3d_data.morphable.picture import mode_sheet
from pipelines.core import Item, Stage, StageOptions

_FILE_OPTIONS = ("bfm", "exp", "info", "uv", "subset")


@dataclasses.dataclass(frozen=True)
class BuildModelOptions(StageOptions):
    bfm: str | None
    exp: str | None
    info: str | None
    uv: str | None
    subset: str | None
    expected_vertices: int | None
    output: str
    face3d_mat: bool
    name: str | None


class BuildModelStage(Stage):
    name = "build_model"
    summary = "Convert BFM files (BFM2009, face3d, Deep3D, 3DDFA) into the native .npz model."
    preview_count = 1
    Options = BuildModelOptions
    input_options = _FILE_OPTIONS

    def check_config(self, cfg: BuildModelOptions):
        for key in _FILE_OPTIONS:
            value = getattr(cfg, key)
            if value and not os.path.exists(value):
                raise ConfigError(f"{key}: {value!r} does not exist")
        if not cfg.output.endswith(".npz"):
            raise ConfigError(f"output: expected a .npz file name, got {cfg.output!r}")

    def list_items(self, cfg: BuildModelOptions, ctx):
        inputs = {k: str(getattr(cfg, k)) for k in _FILE_OPTIONS if getattr(cfg, k)}
        return [Item(key="model", inputs=inputs)]

    def process(self, item, cfg: BuildModelOptions, ctx):
        model = load_model(cfg.bfm, exp=cfg.exp, info=cfg.info) if cfg.bfm else builtin_model()
        if cfg.uv:
            model = attach_uv(model, cfg.uv, cfg.info)
        if cfg.subset:
            try:
                model = model.subset(read_vertex_subset(cfg.subset))
            except ValueError as exc:
                raise InputError(cfg.subset, str(exc)) from None
        if cfg.expected_vertices is not None and model.n_vertices != cfg.expected_vertices:
            raise InputError(cfg.bfm or "builtin",
                             f"model has {model.n_vertices} vertices, expected {cfg.expected_vertices}")
        if cfg.name:
            model.name = cfg.name
        out = ctx.path(cfg.output)
        model.save(out)
        started = time.perf_counter()
        MorphableModel.load(out)
        load_s = time.perf_counter() - started
        outputs = [cfg.output]
        if cfg.face3d_mat:
            write_mat(ctx.path("BFM.mat"), face3d_bfm_fields(model))
            outputs.append("BFM.mat")
        report = model_report(model)
        write_text(ctx.path("model_report.json"), json.dumps(report, indent=2) + "\n")
        outputs.append("model_report.json")
        return {"outputs": outputs, "n_vertices": model.n_vertices, "n_shape": model.n_shape,
                "n_exp": model.n_exp, "n_tex": model.n_tex, "load_seconds": load_s,
                "max_shape_orthonormality_error": max(report["shape_basis"].values())}

    def preview(self, record, cfg: BuildModelOptions, ctx):
        model = MorphableModel.load(ctx.path(record["outputs"][0]))
        if model.triangles is None:
            return None
        return mode_sheet(model, n_shape=3, n_exp=3, size=128)
