"""Stage ``synth_300wlp``: a synthetic dataset in exactly the 300W-LP layout.

One item per sample ``<prefix>_<i>``. Identity (shape + texture) is shared by
``views_per_identity`` consecutive samples and drawn from a seed derived from (global seed,
identity), so it is the same whichever worker renders which view; pose, expression, lighting and
background come from the item's own seed. Each item writes ``<name>.jpg``, ``<name>.mat``
(``Pose_Para``, ``Shape_Para``, ``Exp_Para``, ``Tex_Para``, ``pt2d``, ``pt3d_68``, ``roi`` ...)
and ``landmarks/<name>_pts.mat``. ``finish`` writes ``labels.txt`` (one line per sample:
``<name>.jpg`` then 7 pose + Ks shape + Ke expression values), ``train.txt``/``val.txt``/``test.txt``
(``<name>.jpg <name>.mat`` rows, split by identity) and ``stats.json`` (per-channel RGB mean of
the training images, counts, the label layout). See docs/morphable.md.
"""

from __future__ import annotations

import json
import os

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.io import read_image, read_mat, write_datalist, write_image, write_text
from face3d_data.io.images import is_image_file
from face3d_data.viz import draw_landmarks
from pipelines.core import Item, Stage


def _identity_rng(seed: int, identity: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(identity), 0x5EED]))


def _split_of(identity: int, seed: int, fractions) -> str:
    """Deterministic train/val/test assignment of one identity."""
    u = _identity_rng(seed, identity).random()  # a uniform number per identity
    train, val = float(fractions[0]), float(fractions[1])
    return "train" if u < train else ("val" if u < train + val else "test")


class Synth300WLP(Stage):
    name = "synth_300wlp"
    summary = "Synthetic 300W-LP-format dataset rendered from a morphable model."

    def check_config(self, cfg):
        if int(cfg["count"]) < 1:
            raise ConfigError("count: expected at least 1")
        if int(cfg["image_size"]) < 32:
            raise ConfigError("image_size: expected at least 32")
        if int(cfg["views_per_identity"]) < 1:
            raise ConfigError("views_per_identity: expected at least 1")
        if not 0 <= float(cfg["yaw_range_deg"]) <= 90:
            raise ConfigError("yaw_range_deg: expected 0..90")
        fw = cfg["face_width_px"]
        if not (isinstance(fw, (list, tuple)) and len(fw) == 2 and 0 < float(fw[0]) <= float(fw[1])):
            raise ConfigError(f"face_width_px: expected [low, high] with 0 < low <= high, got {fw!r}")
        split = cfg["split"]
        if not (isinstance(split, (list, tuple)) and len(split) == 3 and min(map(float, split)) >= 0
                and abs(sum(map(float, split)) - 1) < 1e-6):
            raise ConfigError(f"split: expected three fractions summing to 1, got {split!r}")
        bg = cfg.get("backgrounds")
        if bg and not os.path.isdir(bg):
            raise ConfigError(f"backgrounds: {bg!r} is not a folder")
        if not 1 <= int(cfg["jpeg_quality"]) <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")

    def setup(self, cfg):
        from face3d_data.morphable import load_model

        model = load_model(cfg["model"])
        if model.triangles is None or model.tex_mean is None:
            raise ConfigError(f"model {model.name!r}: synthesis needs triangles and a texture model")
        backgrounds = []
        if cfg.get("backgrounds"):
            for dirpath, _, files in os.walk(cfg["backgrounds"]):
                backgrounds += [os.path.join(dirpath, f) for f in sorted(files) if is_image_file(f)]
            if not backgrounds:
                raise ConfigError(f"backgrounds: no images in {cfg['backgrounds']!r}")
        return model, sorted(backgrounds)

    def list_items(self, cfg, ctx):
        return [Item(key=f"{cfg['prefix']}_{i:06d}") for i in range(int(cfg["count"]))]

    def _pose(self, cfg):
        from face3d_data.w300lp.synth import PoseDistribution

        return PoseDistribution(yaw_range_deg=float(cfg["yaw_range_deg"]),
                                pitch_std_deg=float(cfg["pitch_std_deg"]),
                                roll_std_deg=float(cfg["roll_std_deg"]),
                                face_width_px=tuple(float(v) for v in cfg["face_width_px"]),
                                center_jitter=float(cfg["center_jitter"]))

    def process(self, item, cfg, ctx):
        from face3d_data.w300lp import write_labels, write_pts_mat
        from face3d_data.w300lp.synth import sample_coefficients, synthesize

        model, backgrounds = ctx.resources
        index = int(item.key.rsplit("_", 1)[1])
        identity = index // int(cfg["views_per_identity"])
        seed = int(ctx.options.get("seed", 0))
        id_rng = _identity_rng(seed, identity)
        shape_para = sample_coefficients(model, id_rng, float(cfg["shape_scale"]), "shape")
        tex_para = sample_coefficients(model, id_rng, 1.0, "tex")
        rng = ctx.rng
        background = None
        if backgrounds:
            background = read_image(backgrounds[int(rng.integers(len(backgrounds)))])
        sample = synthesize(model, rng, int(cfg["image_size"]), pose=self._pose(cfg),
                            shape_para=shape_para, tex_para=tex_para,
                            exp_scale=float(cfg["exp_scale"]), background=background)
        name = item.key
        write_image(ctx.path(name + ".jpg"), sample.image, quality=int(cfg["jpeg_quality"]))
        write_labels(ctx.path(name + ".mat"), sample.labels)
        write_pts_mat(ctx.path("landmarks", name + "_pts.mat"), sample.pts_2d, sample.pts_3d)
        pose = sample.labels["Pose_Para"].ravel()
        mean_rgb = sample.image.reshape(-1, 3).mean(axis=0)
        return {"outputs": [name + ".jpg", name + ".mat", f"landmarks/{name}_pts.mat"],
                "identity": identity, "split": _split_of(identity, seed, cfg["split"]),
                "pitch_deg": float(np.rad2deg(pose[0])), "yaw_deg": float(np.rad2deg(pose[1])),
                "roll_deg": float(np.rad2deg(pose[2])),
                "mean_r": float(mean_rgb[0]), "mean_g": float(mean_rgb[1]), "mean_b": float(mean_rgb[2])}

    def finish(self, cfg, ctx, records):
        records = sorted(records, key=lambda r: r["key"])
        lines = []
        for r in records:
            mat = read_mat(ctx.path(r["key"] + ".mat"))
            values = np.concatenate([np.ravel(mat["Pose_Para"]), np.ravel(mat["Shape_Para"]),
                                     np.ravel(mat["Exp_Para"])]).astype(np.float64)
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
                 "image_size": int(cfg["image_size"])}
        write_text(ctx.path("stats.json"), json.dumps(stats, indent=2) + "\n")

    def preview(self, record, cfg, ctx):
        from face3d_data.coords import pt2d_to_canonical

        image = read_image(ctx.path(record["key"] + ".jpg"))
        pt2d = np.asarray(read_mat(ctx.path(record["key"] + ".mat"))["pt2d"], np.float64)
        return draw_landmarks(image, pt2d_to_canonical(pt2d.T))
