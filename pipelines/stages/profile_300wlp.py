"""Stage ``profile_300wlp``: 300W-LP-style face profiling (out-of-plane views) of a dataset.

Input: any 300W-LP-format folder (``<dir>/<name>.jpg`` + ``.mat`` with ``Pose_Para``,
``Shape_Para``, ``Exp_Para`` of ``model``), e.g. the output of ``fit_3dmm`` or ``synth_300wlp``.
One item per source; for each target view ``k`` (k = 0 is the source itself when
``include_source``; then 1, 2 ... along the yaw sweep) it writes, under ``--out``:

- ``<dir>/<name>_<k>.jpg`` + ``.mat``: the re-rendered photo and its labels (``Pose_Para`` of the
  view, ``Shape_Para``/``Exp_Para`` unchanged, ``pt2d``/``pt3d_68``/``roi`` recomputed, the
  source's other fields copied, ``SH_Para`` dropped) — the 300W-LP layout, so posmap, pncc and
  depth run on the output;
- ``landmarks/<dir>/<name>_<k>_pts.mat``: ``pts_2d`` (2D-style) and ``pts_3d`` (3D-style);
- ``masks/<dir>/<name>_<k>.png`` (``write_masks``): 255 sampled, 128 stretched, 0 no source;
- with ``flip``, the mirrored views under ``<dir>_Flip/`` (and ``landmarks/<dir>_Flip/``,
  ``masks/<dir>_Flip/``), like 300W-LP's ``_Flip`` subsets;
- ``quality/<dir>/<name>.csv``: one row per view (angles, visible/stretched/filled fractions,
  landmark visibility, kept or dropped by ``max_stretch``); ``finish`` gathers every row in
  ``quality.csv``;
- ``sheets/<dir>/<name>.jpg`` (``write_sheets``): the yaw sweep in one row (also the preview).

See docs/profiling.md.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from typing import Literal

import numpy as np

from face3d_data.augment.profile import (
    Jitter,
    ProfileError,
    ProfileOptions,
    Profiler,
    parse_fill,
    sweep_yaws,
    target_angles,
)
from face3d_data.augment.profile_labels import label_fields
from face3d_data.augment.profile_mesh import MeshOptions
from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_image, read_mat, write_image, write_text
from face3d_data.morphable.require import require_model
from face3d_data.viz import contact_sheet, draw_landmarks
from face3d_data.w300lp import (
    REQUIRED_SCHEMA,
    check_data_root,
    dataset_inputs,
    write_labels,
    write_pts_mat,
)
from pipelines.core import Item, Stage, StageOptions

QUALITY_COLUMNS = ["key", "view", "flip", "pitch_deg", "yaw_deg", "roll_deg", "visible_fraction",
                   "stretched_fraction", "filled_fraction", "landmark_visibility", "face_pixels",
                   "kept"]


@dataclasses.dataclass(frozen=True)
class ProfileStageOptions(StageOptions):
    data_root: str | None
    model: str
    yaw_step: float
    max_yaw: float
    yaws: list[float] | None
    include_inward: bool
    include_source: bool
    pitch_jitter: float
    roll_jitter: float
    jitter_distribution: Literal["normal", "uniform"]
    flip: bool
    fill: str
    stretch_factor: float
    max_stretch: float
    min_face_pixels: int
    ring_scales: list[float]
    contour_points: int
    border_margin: float
    border_points: int
    max_depth_slope: float
    border_depth: float
    write_masks: bool
    write_sheets: bool
    jpeg_quality: int


def profile_options(cfg) -> ProfileOptions:
    """The library options of a stage configuration (raises ConfigError on bad values)."""
    try:
        mesh = MeshOptions(contour_points=cfg.contour_points, ring_scales=tuple(cfg.ring_scales),
                           border_margin=cfg.border_margin, border_points=cfg.border_points,
                           max_depth_slope=cfg.max_depth_slope, border_depth=cfg.border_depth)
        return ProfileOptions(mesh=mesh, fill=parse_fill(cfg.fill),
                              stretch_factor=cfg.stretch_factor, min_face_pixels=cfg.min_face_pixels)
    except ValueError as exc:
        raise ConfigError(f"profile_300wlp: {exc}") from None


def _split_key(key: str) -> tuple[str, str]:
    d, _, name = key.rpartition("/")
    return d, name


def _flip_dir(d: str) -> str:
    return f"{d}_Flip" if d else "Flip"


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


class Profile300WLPStage(Stage):
    name = "profile_300wlp"
    summary = "300W-LP-style face profiling: out-of-plane yaw sweeps of fitted photos, labels per view."
    Options = ProfileStageOptions
    input_options = ("data_root",)
    asset_options = ("model",)
    preview_count = 6

    def check_config(self, cfg: ProfileStageOptions):
        check_data_root(cfg.data_root)
        if not 0 < cfg.yaw_step <= 90:
            raise ConfigError("yaw_step: expected a value in (0, 90] degrees")
        if not 0 <= cfg.max_yaw <= 90:
            raise ConfigError("max_yaw: expected 0..90 degrees")
        if cfg.yaws is not None and (not cfg.yaws or any(abs(y) > 90 for y in cfg.yaws)):
            raise ConfigError("yaws: expected a non-empty list of yaws with |yaw| <= 90, or null")
        if cfg.pitch_jitter < 0 or cfg.roll_jitter < 0:
            raise ConfigError("pitch_jitter/roll_jitter: expected standard deviations >= 0")
        if not 0 <= cfg.max_stretch <= 1:
            raise ConfigError("max_stretch: expected a fraction in 0..1")
        if not 1 <= cfg.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")
        profile_options(cfg)

    def setup(self, cfg: ProfileStageOptions):
        model = require_model(cfg.model, needs=("triangles",), purpose="face profiling")
        return Profiler(model, profile_options(cfg), mirror=cfg.flip)

    def list_items(self, cfg: ProfileStageOptions, ctx):
        return [Item(key, inputs) for key, inputs in dataset_inputs(cfg.data_root, exclude=[ctx.out_dir])]

    def process(self, item, cfg: ProfileStageOptions, ctx):
        profiler: Profiler = ctx.resources
        mat_path = item.inputs["mat"]
        image = read_image(item.inputs["image"])
        fields = read_mat(mat_path, required=REQUIRED_SCHEMA, finite=("Shape_Para", "Exp_Para"))
        pose = np.asarray(fields["Pose_Para"], np.float64).ravel()
        try:
            source = profiler.prepare(image, pose, fields["Shape_Para"], fields["Exp_Para"])
        except ProfileError as exc:
            raise InputError(mat_path, str(exc)) from None
        yaw0 = math.degrees(pose[1])
        try:
            yaws = sweep_yaws(yaw0, cfg.yaw_step, cfg.max_yaw, cfg.yaws, cfg.include_inward)
        except ValueError as exc:
            raise InputError(mat_path, str(exc)) from None
        jitter = Jitter(cfg.pitch_jitter, cfg.roll_jitter, cfg.jitter_distribution)
        angles = target_angles(pose, yaws, jitter, ctx.rng)
        views = [(0, source.pose_para[:3])] if cfg.include_source else []
        views += [(k + 1, a) for k, a in enumerate(angles)]

        d, name = _split_key(item.key)
        outputs, rows, sheet, captions, kept = [], [], [], [], 0
        for k, ang in views:
            try:
                view = profiler.view(source, ang)
            except ProfileError as exc:
                raise InputError(mat_path, f"view {k}: {exc}") from None
            q = view.quality
            keep = k == 0 or q.stretched_fraction <= cfg.max_stretch
            variants = [(d, view, False)]
            if cfg.flip:
                variants.append((_flip_dir(d), profiler.flip(view, source), True))
            for folder, v, flipped in variants:
                rows.append([item.key, k, int(flipped), *(round(a, 4) for a in v.angles_deg),
                             q.visible_fraction, q.stretched_fraction, q.filled_fraction,
                             q.landmark_visibility, q.face_pixels, int(keep)])
                if not keep:
                    continue
                outputs += self._write_view(ctx, cfg, folder, f"{name}_{k}", v, fields)
            if keep:
                kept += 1
                sheet.append(draw_landmarks(view.image, view.landmarks.pt2d))
                captions.append(f"yaw {view.angles_deg[1]:.0f}")
        buf = io.StringIO()
        buf.write(",".join(QUALITY_COLUMNS) + "\n")
        for r in rows:
            buf.write(",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in r) + "\n")
        qname = _join("quality", d, name + ".csv")
        write_text(ctx.path(qname), buf.getvalue())
        outputs.append(qname)
        if cfg.write_sheets:
            sname = _join("sheets", d, name + ".jpg")
            write_image(ctx.path(sname), contact_sheet(sheet, ncols=max(1, len(sheet)), tile_size=160,
                                                       labels=captions))
            outputs.append(sname)
        own = [r for r in rows if not r[2] and r[1] > 0]
        return {"outputs": outputs, "source_yaw_deg": round(yaw0, 4), "views": len(own),
                "views_kept": kept - (1 if cfg.include_source else 0),
                "min_visible_fraction": min((r[6] for r in own), default=None),
                "max_stretched_fraction": max((r[7] for r in own), default=None),
                "mesh_points": len(source.mesh.points), "anchors_rejected": source.mesh.rejected}

    def _write_view(self, ctx, cfg, folder, stem, view, fields) -> list[str]:
        base = _join(folder, stem)
        labels = label_fields(fields, view.pose_para, view.landmarks, view.shape_para, view.exp_para)
        write_image(ctx.path(base + ".jpg"), view.image, quality=cfg.jpeg_quality)
        write_labels(ctx.path(base + ".mat"), labels)
        pts = _join("landmarks", folder, stem + "_pts.mat")
        write_pts_mat(ctx.path(pts), view.landmarks.pt2d, view.landmarks.pt3d[:, :2])
        out = [base + ".jpg", base + ".mat", pts]
        if cfg.write_masks:
            mask = _join("masks", folder, stem + ".png")
            write_image(ctx.path(mask), view.mask)
            out.append(mask)
        return out

    def finish(self, cfg: ProfileStageOptions, ctx, records):
        lines = [",".join(QUALITY_COLUMNS)]
        for r in sorted(records, key=lambda r: r["key"]):
            q = next((p for p in r.get("outputs", []) if p.startswith("quality/")), None)
            if q and os.path.exists(ctx.path(q)):
                with open(ctx.path(q), encoding="utf-8") as f:
                    lines += f.read().splitlines()[1:]
        write_text(ctx.path("quality.csv"), "\n".join(lines) + "\n")

    def preview(self, record, cfg: ProfileStageOptions, ctx):
        sheet = next((p for p in record["outputs"] if p.startswith("sheets/")), None)
        if sheet is not None:
            return read_image(ctx.path(sheet))
        jpg = next((p for p in record["outputs"] if p.endswith(".jpg")), None)
        return None if jpg is None else read_image(ctx.path(jpg))
