"""Stage ``rotate_300wlp``: in-plane rotation augmentation of a 300W-LP-format dataset.

One item per source sample (``<subset>/<name>.jpg`` + ``.mat``, optional
``landmarks/<subset>/<name>_pts.mat``); for every angle θ it writes, under ``--out`` and in the
same sub-folders, ``<name>_angle_<θ>.jpg``, ``<name>_angle_<θ>.mat`` (every field of the source
kept, ``Pose_Para``/``pt2d``/``pt3d_68``/``roi`` rotated, same shapes and dtypes) and, when the
source has one, ``landmarks/<subset>/<name>_angle_<θ>_pts.mat``. The image is decoded once per
item. With ``model`` set, each output's labels are checked (the model's 68 landmarks projected
with the new ``Pose_Para`` against the rotated original projection; ``label_error_px`` column)
and drawn on the preview tiles. ``--out`` must be a folder apart from ``--data-root`` (the
runner refuses one inside it), so a rerun never rotates its own outputs. See docs/prnet.md.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from face3d_data.augment import angle_suffix, in_plane_rotation, parse_fill
from face3d_data.augment.rotate import ImageRotation, InPlaneRotation, LabelRotation, PtsRotation
from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_image, read_mat, write_bytes, write_mat
from face3d_data.morphable.require import require_model
from face3d_data.viz import draw_landmarks
from face3d_data.w300lp import (
    check_data_root,
    dataset_inputs,
    labels_from_fields,
    landmarks_from_params,
    points_to_canonical,
    read_label_fields,
)
from pipelines.core import Item, Stage, StageOptions

_ROTATIONS: dict[tuple, InPlaneRotation] = {}


def _rotation(theta: float, image_hw: tuple[int, int], expand: bool) -> InPlaneRotation:
    """``in_plane_rotation(theta, image_hw, expand)``, made once per process for each angle and
    image size (read-only: its matrix is shared by every item of that size)."""
    key = (float(theta), int(image_hw[0]), int(image_hw[1]), bool(expand))
    rotation = _ROTATIONS.get(key)
    if rotation is None:
        if len(_ROTATIONS) >= 4096:  # many image sizes: keep the cache small
            _ROTATIONS.clear()
        rotation = _ROTATIONS[key] = in_plane_rotation(theta, image_hw, expand=expand)
    return rotation


@dataclasses.dataclass(frozen=True)
class RotateOptions(StageOptions):
    data_root: str | None
    angles: list[float]
    expand: bool
    fill: str
    jpeg_quality: int
    model: str | None


class Rotate300WLPStage(Stage):
    name = "rotate_300wlp"
    summary = "In-plane rotation augmentation of a 300W-LP-format dataset (analytic labels)."
    preview_count = 8
    Options = RotateOptions
    input_options = ("data_root",)
    asset_options = ("model",)

    def check_config(self, cfg: RotateOptions):
        check_data_root(cfg.data_root)
        if not cfg.angles or len(set(cfg.angles)) != len(cfg.angles):
            raise ConfigError(f"angles: expected distinct numbers, got {list(cfg.angles)!r}")
        try:
            parse_fill(cfg.fill)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not 1 <= cfg.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")

    def setup(self, cfg: RotateOptions):
        """The model's 68 landmark vertices (a model reduced to them), or None without a model."""
        if cfg.model in (None, "", "none"):
            return None
        model = require_model(cfg.model)
        return model.subset(model.landmarks)

    def list_items(self, cfg: RotateOptions, ctx):
        return [Item(key, inputs) for key, inputs in dataset_inputs(cfg.data_root, exclude=[ctx.out_dir])]

    def process(self, item, cfg: RotateOptions, ctx):
        fill = parse_fill(cfg.fill)
        mat_path = item.inputs["mat"]
        image = read_image(item.inputs["image"])
        fields = read_label_fields(mat_path)
        pts = read_mat(item.inputs["pts"]) if "pts" in item.inputs else None
        lm_model = ctx.resources
        before = None
        if lm_model is not None:
            before = landmarks_from_params(lm_model, labels_from_fields(fields, mat_path),
                                           image.shape[:2], path=mat_path)
        pts_rel = None
        if pts is not None:
            pts_rel = os.path.relpath(item.inputs["pts"], cfg.data_root).replace(os.sep, "/")
            pts_rel = pts_rel[:-len("_pts.mat")] if pts_rel.endswith("_pts.mat") else \
                os.path.splitext(pts_rel)[0]
        outputs, worst = [], 0.0
        try:  # the angle-independent work once per item: colour order, pose matrix, canonical points
            image_rot = ImageRotation(image, fill=fill)
            label_rot = LabelRotation(fields)
            pts_rot = None if pts is None else PtsRotation(pts)
            rotations = [_rotation(theta, image.shape[:2], cfg.expand) for theta in cfg.angles]
        except ValueError as exc:
            raise InputError(mat_path, str(exc)) from None
        for theta, rotation in zip(cfg.angles, rotations):
            labels = label_rot.rotate(rotation, copy=False)
            name = item.key + angle_suffix(theta)
            write_bytes(ctx.path(name + ".jpg"), image_rot.jpeg(rotation, cfg.jpeg_quality))
            write_mat(ctx.path(name + ".mat"), labels)
            outputs += [name + ".jpg", name + ".mat"]
            if pts_rot is not None:
                pts_name = pts_rel + angle_suffix(theta) + "_pts.mat"
                write_mat(ctx.path(pts_name), pts_rot.rotate(rotation, copy=False))
                outputs.append(pts_name)
            if lm_model is not None:
                after = landmarks_from_params(lm_model, labels_from_fields(labels, mat_path),
                                              rotation.out_hw, path=mat_path)
                expected = rotation.apply(before[:, :2])
                worst = max(worst, float(np.abs(after[:, :2] - expected).max()))
        h, w = image.shape[:2]
        record = {"outputs": outputs, "angles": ",".join(f"{a:g}" for a in cfg.angles),
                  "pivot_x": (w - 1) / 2.0, "pivot_y": (h - 1) / 2.0}
        if lm_model is not None:
            record["label_error_px"] = worst
        return record

    def preview(self, record, cfg: RotateOptions, ctx):
        jpg = next(p for p in record["outputs"] if p.endswith(".jpg"))
        image = read_image(ctx.path(jpg))
        lm_model = ctx.resources
        if lm_model is not None:
            mat = ctx.path(jpg[:-4] + ".mat")
            points = landmarks_from_params(lm_model, labels_from_fields(read_mat(mat), mat),
                                           image.shape[:2], path=mat)[:, :2]
        else:
            pts_file = next((p for p in record["outputs"] if p.endswith("_pts.mat")), None)
            if pts_file is None:
                return image
            points = points_to_canonical(np.asarray(read_mat(ctx.path(pts_file))["pts_2d"], float))
        return draw_landmarks(image, points)
