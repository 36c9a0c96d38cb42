"""Stage ``synth_300wlp``: a synthetic dataset in exactly the 300W-LP layout.

One item per sample ``<prefix>_<i>``. Identity (shape + texture) is shared by
``views_per_identity`` consecutive samples and drawn from a seed derived from (run seed,
identity) (:func:`face3d_data.w300lp.synth.identity_rng`), so it is the same whichever worker
renders which view; pose, expression, lighting and background come from the item's own seed. Each
item writes ``<name>.jpg``, ``<name>.mat`` (``Pose_Para``, ``Shape_Para``, ``Exp_Para``,
``Tex_Para``, ``pt2d``, ``pt3d_68``, ``roi`` ...) and ``landmarks/<name>_pts.mat``. ``finish``
writes ``labels.txt`` (one line per sample: ``<name>.jpg`` then 7 pose + Ks shape + Ke expression
values), ``train.txt``/``val.txt``/``test.txt`` (``<name>.jpg <name>.mat`` rows, split by
identity) and ``stats.json`` (per-channel RGB mean of the training images, counts, the label
layout). See docs/morphable.md.

With ``views: K > 1`` (``--views K``) the run makes ``count`` multi-view groups instead: items
``<prefix>_<group>_v0 … _v{K-1}``, each a normal 300W-LP sample, whose views share the identity,
expression and texture of their group (seeded by (run seed, group) only) and differ in pose,
lighting and background (:mod:`face3d_data.w300lp.multiview`: view 0 near-frontal, the others
spread over the yaw range). Each group is one identity (``views_per_identity`` is not used) and
its split keeps its views together; ``finish`` also writes ``multiview_<split>.txt``
(:func:`face3d_data.io.parsing.write_multiview`: one complete group per line). See
docs/multiview.md. ``views: 1`` writes exactly what it wrote before the option existed.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.io import list_images, read_image, read_mat, write_datalist, write_image, write_text
from face3d_data.io.parsing import write_multiview
from face3d_data.morphable.require import require_model
from face3d_data.viz import draw_landmarks
from face3d_data.w300lp import label_vector, points_to_canonical, write_labels, write_pts_mat
from face3d_data.w300lp.multiview import complete_groups, parse_view_key, synthesize_view, view_key
from face3d_data.w300lp.synth import PoseDistribution, identity_rng, identity_split, sample_coefficients, synthesize
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class SynthOptions(StageOptions):
    count: int
    model: str
    image_size: int
    views_per_identity: int
    views: int
    frontal_yaw_deg: float
    yaw_range_deg: float
    pitch_std_deg: float
    roll_std_deg: float
    face_width_px: tuple[float, float]
    center_jitter: float
    shape_scale: float
    exp_scale: float
    backgrounds: str | None
    jpeg_quality: int
    prefix: str
    split: tuple[float, float, float]


class Synth300WLPStage(Stage):
    name = "synth_300wlp"
    summary = "Synthetic 300W-LP-format dataset rendered from a morphable model."
    Options = SynthOptions
    input_options = ("backgrounds",)
    asset_options = ("model", "backgrounds")

    def check_config(self, cfg: SynthOptions):
        if cfg.count < 1:
            raise ConfigError("count: expected at least 1")
        if cfg.image_size < 32:
            raise ConfigError("image_size: expected at least 32")
        if cfg.views_per_identity < 1:
            raise ConfigError("views_per_identity: expected at least 1")
        if cfg.views < 1:
            raise ConfigError(f"views: expected at least 1, got {cfg.views}")
        if not 0 <= cfg.frontal_yaw_deg <= 90:
            raise ConfigError(f"frontal_yaw_deg: expected 0..90, got {cfg.frontal_yaw_deg}")
        if not 0 <= cfg.yaw_range_deg <= 90:
            raise ConfigError("yaw_range_deg: expected 0..90")
        low, high = cfg.face_width_px
        if not 0 < low <= high:
            raise ConfigError("face_width_px: expected [low, high] with 0 < low <= high, "
                              f"got {list(cfg.face_width_px)!r}")
        if min(cfg.split) < 0 or abs(sum(cfg.split) - 1) >= 1e-6:
            raise ConfigError(f"split: expected three fractions summing to 1, got {list(cfg.split)!r}")
        if cfg.backgrounds and not os.path.isdir(cfg.backgrounds):
            raise ConfigError(f"backgrounds: {cfg.backgrounds!r} is not a folder")
        if not 1 <= cfg.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")

    def setup(self, cfg: SynthOptions):
        model = require_model(cfg.model, needs=("triangles", "texture"), purpose="synthesis")
        backgrounds = []
        if cfg.backgrounds:
            backgrounds = sorted(os.path.join(cfg.backgrounds, rel) for rel in list_images(cfg.backgrounds))
            if not backgrounds:
                raise ConfigError(f"backgrounds: no images in {cfg.backgrounds!r}")
        return model, backgrounds

    def list_items(self, cfg: SynthOptions, ctx):
        if cfg.views > 1:
            return [Item(key=view_key(cfg.prefix, g, v)) for g in range(cfg.count) for v in range(cfg.views)]
        return [Item(key=f"{cfg.prefix}_{i:06d}") for i in range(cfg.count)]

    def _pose(self, cfg: SynthOptions) -> PoseDistribution:
        return PoseDistribution(yaw_range_deg=cfg.yaw_range_deg, pitch_std_deg=cfg.pitch_std_deg,
                                roll_std_deg=cfg.roll_std_deg, face_width_px=tuple(cfg.face_width_px),
                                center_jitter=cfg.center_jitter)

    def _process_view(self, item, cfg: SynthOptions, ctx):
        model, backgrounds = ctx.resources
        group, view = parse_view_key(item.key)
        rng = ctx.rng
        background = None
        if backgrounds:
            background = read_image(backgrounds[int(rng.integers(len(backgrounds)))])
        sample = synthesize_view(model, ctx.run_seed, group, view, cfg.views, rng, cfg.image_size,
                                 self._pose(cfg), frontal_yaw_deg=cfg.frontal_yaw_deg,
                                 shape_scale=cfg.shape_scale, exp_scale=cfg.exp_scale, background=background)
        written = self._write(item.key, sample, cfg, ctx)
        return {"outputs": written.pop("outputs"), "identity": group, "group": group, "view": view,
                "split": identity_split(group, ctx.run_seed, cfg.split), **written}

    def _write(self, name, sample, cfg: SynthOptions, ctx) -> dict:
        write_image(ctx.path(name + ".jpg"), sample.image, quality=cfg.jpeg_quality)
        write_labels(ctx.path(name + ".mat"), sample.labels)
        write_pts_mat(ctx.path("landmarks", name + "_pts.mat"), sample.pts_2d, sample.pts_3d)
        pose_para = sample.labels["Pose_Para"].ravel()
        mean_rgb = sample.image.reshape(-1, 3).mean(axis=0)
        return {"outputs": [name + ".jpg", name + ".mat", f"landmarks/{name}_pts.mat"],
                "pitch_deg": float(np.rad2deg(pose_para[0])), "yaw_deg": float(np.rad2deg(pose_para[1])),
                "roll_deg": float(np.rad2deg(pose_para[2])),
                "mean_r": float(mean_rgb[0]), "mean_g": float(mean_rgb[1]), "mean_b": float(mean_rgb[2])}

    def process(self, item, cfg: SynthOptions, ctx):
        if cfg.views > 1:
            return self._process_view(item, cfg, ctx)
        model, backgrounds = ctx.resources
        index = int(item.key.rsplit("_", 1)[1])
        identity = index // cfg.views_per_identity
        id_rng = identity_rng(ctx.run_seed, identity)
        shape_para = sample_coefficients(model, id_rng, cfg.shape_scale, "shape")
        tex_para = sample_coefficients(model, id_rng, 1.0, "tex")
        rng = ctx.rng
        background = None
        if backgrounds:
            background = read_image(backgrounds[int(rng.integers(len(backgrounds)))])
        sample = synthesize(model, rng, cfg.image_size, pose=self._pose(cfg), shape_para=shape_para,
                            tex_para=tex_para, exp_scale=cfg.exp_scale, background=background)
        written = self._write(item.key, sample, cfg, ctx)
        return {"outputs": written.pop("outputs"), "identity": identity,
                "split": identity_split(identity, ctx.run_seed, cfg.split), **written}

    def finish(self, cfg: SynthOptions, ctx, records):
        if cfg.views > 1:
            records = sorted(records, key=lambda r: parse_view_key(r["key"]))
        else:
            records = sorted(records, key=lambda r: r["key"])
        lines = []
        for r in records:
            values = label_vector(read_mat(ctx.path(r["key"] + ".mat")))
            lines.append(f"{r['key']}.jpg " + " ".join(f"{v:.9g}" for v in values))
        write_text(ctx.path("labels.txt"), "\n".join(lines) + ("\n" if lines else ""))
        counts = {}
        for split in ("train", "val", "test"):
            rows = [(ctx.path(r["key"] + ".jpg"), ctx.path(r["key"] + ".mat"))
                    for r in records if r.get("split") == split]
            counts[split] = write_datalist(ctx.path(f"{split}.txt"), rows, ctx.out_dir)
        train = [r for r in records if r.get("split") == "train"] or records
        mean = [float(np.mean([r[k] for r in train])) if train else 0.0 for k in ("mean_r", "mean_g", "mean_b")]
        model = ctx.resources[0] if ctx.resources else None
        stats = {"count": len(records), "splits": counts, "channel_mean_rgb": mean,
                 "channel_mean_of": "train" if any(r.get("split") == "train" for r in records) else "all",
                 "label_vector": "Pose_Para (7: pitch, yaw, roll [rad], tx, ty, tz, f), then Shape_Para, then Exp_Para",
                 "n_shape": None if model is None else model.n_shape,
                 "n_exp": None if model is None else model.n_exp,
                 "model": None if model is None else model.name,
                 "image_size": cfg.image_size}
        if cfg.views > 1:
            stats.update(self._write_multiview(cfg, ctx, records))
        write_text(ctx.path("stats.json"), json.dumps(stats, indent=2) + "\n")

    def _write_multiview(self, cfg: SynthOptions, ctx, records) -> dict:
        """``multiview_<split>.txt`` for every split (complete groups only); the stats entries."""
        split_of = {r["key"]: r.get("split") for r in records}
        groups, _ = complete_groups(split_of, cfg.views)
        complete = {parse_view_key(keys[0])[0] for keys in groups}
        incomplete = [g for g in range(cfg.count) if g not in complete]  # a view failed (or --limit)
        counts = {}
        for split in ("train", "val", "test"):
            rows = [[(ctx.path(k + ".jpg"), ctx.path(k + ".mat")) for k in keys]
                    for keys in groups if split_of[keys[0]] == split]
            counts[split] = write_multiview(ctx.path(f"multiview_{split}.txt"), rows, ctx.out_dir)
        return {"views": cfg.views, "groups": counts, "incomplete_groups": incomplete,
                "multiview_list": "one group per line: <view 0>.jpg <view 0>.mat ... <view K-1>.jpg <view K-1>.mat"}

    def preview(self, record, cfg: SynthOptions, ctx):
        image = read_image(ctx.path(record["key"] + ".jpg"))
        pt2d = np.asarray(read_mat(ctx.path(record["key"] + ".mat"))["pt2d"], np.float64)
        return draw_landmarks(image, points_to_canonical(pt2d.T))
