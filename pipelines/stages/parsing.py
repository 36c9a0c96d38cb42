"""Stage ``parsing``: face-part label maps for every sample of a 300W-LP-format dataset.

Per sample ``<subset>/<name>`` (one item each), under ``--out``, the size of the input image and in
its canonical frame (names: :mod:`face3d_data.io.parsing`):

- ``<subset>/<name>_parsing.png``        (H, W) uint8 class ids (background 0, skin 1, left/right
  brow 2/3, left/right eye 4/5, nose 6, upper/lower lip 7/8, inner mouth 9, neck 10; left = the
  image's left in a frontal view, as in the iBUG 68 points);
- ``<subset>/<name>_parsing_color.png``  (H, W, 3) uint8 colour preview;
- ``<subset>/<name>_parsing_onehot.npy`` (H, W, 11) uint8 (``onehot: true``);
- ``<subset>/<name>_parsing_soft.npy``   (H, W, 11) float32 class shares from ``supersample``²
  samples per pixel (``soft: true``).

The face is the label's ``Shape_Para``/``Exp_Para`` with ``--model``, projected with ``Pose_Para``
(:func:`face3d_data.w300lp.load_sample`, :func:`face3d_data.w300lp.project`); per-vertex classes
come from ``classes`` (:class:`face3d_data.parsing.PartLabeller`: the model's regions refined by
its 68 landmarks, the landmarks alone, or a per-vertex class file; triangles that close the mouth
count as inner mouth) and are z-buffered by
:func:`face3d_data.parsing.label_map`. For photos labelled by ``fit_3dmm`` the maps are as good as
the fit; the preview (image | classes | overlay) shows how well they sit. ``finish`` writes
``parsing_classes.json`` (the class table). Manifest columns: ``coverage`` and ``px_<class>``
pixel counts. See docs/parsing.md.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_image, save_npy, write_image, write_text
from face3d_data.io.parsing import PARSING_SUFFIXES
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class ParsingOptions(StageOptions):
    data_root: str | None
    model: str
    classes: str
    onehot: bool
    soft: bool
    supersample: int
    overlay_alpha: float


class ParsingResources:
    """The model and its part labeller, loaded once (a bad model or class file: ConfigError)."""

    def __init__(self, cfg: ParsingOptions):
        from face3d_data.morphable import load_model
        from face3d_data.parsing import PartLabeller

        try:
            self.model = load_model(cfg.model)
        except InputError as exc:
            raise ConfigError(f"model: {exc}") from None
        try:
            self.labeller = PartLabeller(self.model, cfg.classes)
        except InputError as exc:
            raise ConfigError(f"classes: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"parsing: {exc}") from None


class ParsingStage(Stage):
    name = "parsing"
    summary = ("Face-part label maps (skin, brows, eyes, nose, lips, mouth, neck) by z-buffer "
               "for a 300W-LP-format dataset.")
    Options = ParsingOptions
    input_options = ("data_root",)
    asset_options = ("model", "classes")

    def check_config(self, cfg):
        from face3d_data.w300lp import check_data_root

        check_data_root(cfg.data_root)
        if not 1 <= cfg.supersample <= 16:
            raise ConfigError(f"supersample: expected 1..16, got {cfg.supersample}")
        if not 0.0 <= cfg.overlay_alpha <= 1.0:
            raise ConfigError(f"overlay_alpha: expected a value in [0, 1], got {cfg.overlay_alpha}")

    def setup(self, cfg):
        return ParsingResources(cfg)

    def list_items(self, cfg, ctx):
        from face3d_data.w300lp import dataset_inputs

        return [Item(key, inputs) for key, inputs in dataset_inputs(cfg.data_root, exclude=(ctx.out_dir,))]

    def process(self, item, cfg, ctx):
        from face3d_data.parsing import (
            CLASS_NAMES,
            N_CLASSES,
            color_map,
            label_map,
            one_hot,
            soft_label_map,
        )
        from face3d_data.w300lp import face_vertices, load_sample, project

        res = ctx.resources
        sample = load_sample(item.inputs["image"], item.inputs["mat"])
        h, w = sample.image_hw
        vertices = face_vertices(res.model, sample.labels, item.inputs["mat"])
        try:
            projected = project(vertices, sample.labels.pose_para, (h, w))
        except ValueError as exc:
            raise InputError(item.inputs["mat"], str(exc)) from None
        classes = res.labeller.corner_classes(vertices)
        labels = label_map(projected, res.model.triangles, classes, h, w)
        outputs = [item.key + PARSING_SUFFIXES["labels"], item.key + PARSING_SUFFIXES["color"]]
        write_image(ctx.path(outputs[0]), labels)
        write_image(ctx.path(outputs[1]), color_map(labels))
        if cfg.onehot:
            outputs.append(item.key + PARSING_SUFFIXES["onehot"])
            save_npy(ctx.path(outputs[-1]), one_hot(labels))
        if cfg.soft:
            outputs.append(item.key + PARSING_SUFFIXES["soft"])
            save_npy(ctx.path(outputs[-1]),
                     soft_label_map(projected, res.model.triangles, classes, h, w, cfg.supersample))
        counts = np.bincount(labels.ravel(), minlength=N_CLASSES)
        record = {"outputs": outputs, "height": h, "width": w, "coverage": float(1 - counts[0] / labels.size)}
        record.update({f"px_{name}": int(n) for name, n in zip(CLASS_NAMES, counts)})
        return record

    def finish(self, cfg, ctx, records):
        from face3d_data.parsing import class_table

        table = {"classes": class_table(),
                 "left_right": "as seen in a frontal image (iBUG: left eye = landmarks 36-41)",
                 "source": cfg.classes, "model": cfg.model,
                 "frame": "canonical: 0-based, x right, y down; maps have the input image's size"}
        write_text(ctx.path("parsing_classes.json"), json.dumps(table, indent=2, sort_keys=True) + "\n")

    def preview(self, record, cfg, ctx):
        from face3d_data.io.parsing import read_label_map
        from face3d_data.parsing import preview_tile

        image = read_image(record["inputs"]["image"])
        labels = read_label_map(ctx.path(record["key"] + PARSING_SUFFIXES["labels"]))
        return preview_tile(image, labels, cfg.overlay_alpha)
