"""Stage ``pncc``: a PNCC map (3DDFA's Projected Normalized Coordinate Code) per 300W-LP sample.

Per sample ``<subset>/<name>`` (one item each), under ``--out``:

- ``<subset>/<name>_pncc.png``  (H, W, 3) uint8 RGB = round(255 · NCC x, y, z), background 0,
  the size of the input image;
- ``<subset>/<name>_pncc.npy``  the same map as float32 in [0, 1] (``npy: true``).

The NCC code comes from the model's mean (``code: v1``, all vertices; ``code: v2``, the non-neck
vertices, normalised on that subset, the 3DDFA_V2 variant; docs/formats.md#ncc-codes). The face is the
label's ``Shape_Para``/``Exp_Para`` projected with ``Pose_Para`` (w300lp.pose.project) and
z-buffered by :func:`face3d_data.render.render_pncc`. See docs/rendering.md.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import read_image, save_npy, write_image
from face3d_data.render import ncc_code, render_pncc
from pipelines.core import Item, Stage

CODES = ("v1", "v2")


def check_dataset_config(cfg, stage: str) -> None:
    """``data_root`` must be an existing folder."""
    if not cfg.get("data_root"):
        raise ConfigError(f"{stage}: --data-root is required")
    if not os.path.isdir(cfg["data_root"]):
        raise ConfigError(f"{stage}: data_root {cfg['data_root']!r} is not a folder")


def dataset_items(cfg) -> list[Item]:
    """One item per image/label pair of the 300W-LP-format tree at ``data_root``."""
    from face3d_data.w300lp import find_samples

    return [Item(key=s.key, inputs={"image": str(s.image_path), "mat": str(s.mat_path)})
            for s in find_samples(cfg["data_root"])]


def projected_face(model, item) -> tuple[np.ndarray, np.ndarray]:
    """(image (H, W, 3) uint8, vertices (N, 3) float32 canonical image frame) of one sample."""
    from face3d_data.w300lp import read_labels
    from face3d_data.w300lp.pose import project

    image = read_image(item.inputs["image"])
    labels = read_labels(item.inputs["mat"])
    try:
        vertices = model.vertices(labels.shape_para, labels.exp_para)
        return image, project(vertices, labels.pose_para, image.shape[:2])
    except ValueError as exc:
        raise InputError(item.inputs["mat"], str(exc)) from None


def load_face_model(cfg, stage: str):
    """The configured morphable model; it must have triangles."""
    from face3d_data.morphable import load_model

    model = load_model(cfg["model"])
    if model.triangles is None or len(model.triangles) == 0:
        raise ConfigError(f"{stage}: model {cfg['model']!r} has no triangles")
    return model


class PnccResources:
    """The model, the triangles drawn and the per-vertex NCC code (zeros where not drawn)."""

    def __init__(self, cfg):
        self.model = load_face_model(cfg, "pncc")
        mean = np.asarray(self.model.mean, np.float64)
        if cfg["code"] == "v1":
            self.triangles, self.code = self.model.triangles, ncc_code(mean)
        else:
            if self.model.regions is None:
                raise ConfigError("pncc: code v2 needs a model with regions (to drop the neck)")
            keep = self.model.regions != 0          # REGIONS["neck"] == 0
            self.code = np.zeros((len(mean), 3), np.float32)
            self.code[keep] = ncc_code(mean, keep=np.flatnonzero(keep))
            self.triangles = self.model.triangles[keep[self.model.triangles].all(1)]


class PnccStage(Stage):
    name = "pncc"
    summary = "PNCC maps (3DDFA v1/v2 NCC code, z-buffered) for every sample of a 300W-LP-format dataset."

    def check_config(self, cfg):
        check_dataset_config(cfg, "pncc")
        if cfg["code"] not in CODES:
            raise ConfigError(f"code: expected one of {CODES}, got {cfg['code']!r}")

    def setup(self, cfg):
        return PnccResources(cfg)

    def list_items(self, cfg, ctx):
        return dataset_items(cfg)

    def process(self, item, cfg, ctx):
        res = ctx.resources
        image, vertices = projected_face(res.model, item)
        h, w = image.shape[:2]
        pncc = render_pncc(vertices, res.triangles, res.code, h, w)
        outputs = [item.key + "_pncc.png"]
        write_image(ctx.path(outputs[0]), np.round(pncc * 255).astype(np.uint8))
        if cfg["npy"]:
            outputs.append(item.key + "_pncc.npy")
            save_npy(ctx.path(outputs[1]), pncc)
        covered = pncc.any(-1)
        return {"outputs": outputs, "height": h, "width": w, "coverage": float(covered.mean())}

    def preview(self, record, cfg, ctx):
        image = read_image(record["inputs"]["image"])
        pncc = read_image(ctx.path(record["key"] + "_pncc.png"))
        return np.concatenate([image, pncc], axis=1)
