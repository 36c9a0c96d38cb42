"""Stage ``rotate_300wlp``: in-plane rotation augmentation of a 300W-LP-format dataset.

One item per source sample (``<subset>/<name>.jpg`` + ``.mat``, optional
``landmarks/<subset>/<name>_pts.mat``); for every angle θ it writes, under ``--out`` and in the
same sub-folders, ``<name>_angle_<θ>.jpg``, ``<name>_angle_<θ>.mat`` (every field of the source
kept, ``Pose_Para``/``pt2d``/``pt3d_68``/``roi`` rotated, same shapes and dtypes) and, when the
source has one, ``landmarks/<subset>/<name>_angle_<θ>_pts.mat``. The image is decoded once per
item. With ``model`` set, each output's labels are checked (the model's 68 landmarks projected
with the new ``Pose_Para`` against the rotated original projection; ``label_error_px`` column)
and drawn on the preview tiles. See docs/prnet.md.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.augment import angle_suffix, in_plane_rotation, rotate_sample
from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_image, read_mat, write_image, write_mat
from face3d_data.w300lp.pose import project
from face3d_data.viz import draw_landmarks
from pipelines.core import Item, Stage

_POSE_SCHEMA = {"Pose_Para": (7,)}


def parse_fill(text) -> object:
    """The ``fill`` option: ``"0"``..``"255"``, ``"R,G,B"``, ``"reflect"`` or ``"replicate"``."""
    value = str(text).strip().lower()
    if value in ("reflect", "replicate"):
        return value
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        raise ConfigError(f"fill: expected a grey level, 'R,G,B', reflect or replicate, got {text!r}") from None
    if len(parts) not in (1, 3) or not all(0 <= p <= 255 for p in parts):
        raise ConfigError(f"fill: expected one or three values in 0..255, got {text!r}")
    return tuple(parts) if len(parts) == 3 else parts[0]


def parse_angles(values) -> list[float]:
    """The ``angles`` option as floats (finite, distinct)."""
    try:
        angles = [float(a) for a in values]
    except (TypeError, ValueError):
        raise ConfigError(f"angles: expected a list of numbers, got {values!r}") from None
    if not angles or not all(np.isfinite(angles)) or len(set(angles)) != len(angles):
        raise ConfigError(f"angles: expected distinct finite numbers, got {values!r}")
    return angles


def load_landmark_model(spec):
    """The 68 landmark vertices of a model (a model reduced to them), or None."""
    if spec in (None, "", "none"):
        return None
    from face3d_data.morphable import load_model

    model = load_model(spec)
    return model.subset(model.landmarks)


def landmarks_of(lm_model, fields: dict, image_hw, path: str) -> np.ndarray:
    """(68, 3) canonical projection of the model landmarks with the labels in ``fields``."""
    shape = np.asarray(fields.get("Shape_Para", np.zeros(0)), np.float64).ravel()
    exp = np.asarray(fields.get("Exp_Para", np.zeros(0)), np.float64).ravel()
    if shape.size > lm_model.n_shape or exp.size > lm_model.n_exp:
        raise InputError(path, f"labels have {shape.size} shape / {exp.size} expression "
                               f"coefficients; the model has {lm_model.n_shape} / {lm_model.n_exp}")
    vertices = lm_model.vertices(shape if shape.size else None, exp if exp.size else None)
    return project(vertices, fields["Pose_Para"], image_hw)


class Rotate300WLP(Stage):
    name = "rotate_300wlp"
    summary = "In-plane rotation augmentation of a 300W-LP-format dataset (analytic labels)."
    preview_count = 8

    def check_config(self, cfg):
        if not cfg.get("data_root"):
            raise ConfigError("rotate_300wlp: --data-root is required")
        if not os.path.isdir(cfg["data_root"]):
            raise ConfigError(f"rotate_300wlp: data_root {cfg['data_root']!r} is not a folder")
        parse_angles(cfg["angles"])
        parse_fill(cfg["fill"])
        if not 1 <= int(cfg["jpeg_quality"]) <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")

    def setup(self, cfg):
        return load_landmark_model(cfg.get("model"))

    def list_items(self, cfg, ctx):
        from face3d_data.w300lp import find_samples

        items = []
        for s in find_samples(cfg["data_root"]):
            inputs = {"image": str(s.image_path), "mat": str(s.mat_path)}
            if s.pts_path:
                inputs["pts"] = str(s.pts_path)
            items.append(Item(key=s.key, inputs=inputs))
        return items

    def process(self, item, cfg, ctx):
        angles = parse_angles(cfg["angles"])
        fill = parse_fill(cfg["fill"])
        image = read_image(item.inputs["image"])
        fields = read_mat(item.inputs["mat"], required=_POSE_SCHEMA,
                          finite=("pt2d", "pt3d_68", "Shape_Para", "Exp_Para"))
        pts = read_mat(item.inputs["pts"]) if "pts" in item.inputs else None
        lm_model = ctx.resources
        before = None if lm_model is None else \
            landmarks_of(lm_model, fields, image.shape[:2], item.inputs["mat"])
        stem = item.key  # "<subset>/<name>"
        pts_rel = None
        if pts is not None:
            pts_rel = os.path.relpath(item.inputs["pts"], cfg["data_root"]).replace(os.sep, "/")
            pts_rel = pts_rel[:-len("_pts.mat")] if pts_rel.endswith("_pts.mat") else \
                os.path.splitext(pts_rel)[0]
        outputs, worst = [], 0.0
        for theta in angles:
            try:
                rotated = rotate_sample(image, fields, theta, pts=pts, expand=bool(cfg["expand"]),
                                        fill=fill)
            except ValueError as exc:
                raise InputError(item.inputs["mat"], str(exc)) from None
            name = stem + angle_suffix(theta)
            write_image(ctx.path(name + ".jpg"), rotated.image, quality=int(cfg["jpeg_quality"]))
            write_mat(ctx.path(name + ".mat"), rotated.labels)
            outputs += [name + ".jpg", name + ".mat"]
            if rotated.pts is not None:
                pts_name = pts_rel + angle_suffix(theta) + "_pts.mat"
                write_mat(ctx.path(pts_name), rotated.pts)
                outputs.append(pts_name)
            if lm_model is not None:
                after = landmarks_of(lm_model, rotated.labels, rotated.rotation.out_hw,
                                     item.inputs["mat"])
                expected = rotated.rotation.apply(before[:, :2])
                worst = max(worst, float(np.abs(after[:, :2] - expected).max()))
        h, w = image.shape[:2]
        record = {"outputs": outputs, "angles": ",".join(f"{a:g}" for a in angles),
                  "pivot_x": (w - 1) / 2.0, "pivot_y": (h - 1) / 2.0}
        if lm_model is not None:
            record["label_error_px"] = worst
        return record

    def preview(self, record, cfg, ctx):
        jpg = next(p for p in record["outputs"] if p.endswith(".jpg"))
        image = read_image(ctx.path(jpg))
        lm_model = ctx.resources
        if lm_model is not None:
            fields = read_mat(ctx.path(jpg[:-4] + ".mat"))
            points = landmarks_of(lm_model, fields, image.shape[:2], jpg)[:, :2]
        else:
            pts_file = next((p for p in record["outputs"] if p.endswith("_pts.mat")), None)
            if pts_file is None:
                return image
            from face3d_data.coords import pt2d_to_canonical
            points = pt2d_to_canonical(np.asarray(read_mat(ctx.path(pts_file))["pts_2d"], float))
        return draw_landmarks(image, points)
