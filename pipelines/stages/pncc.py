"""Stage ``pncc``: a PNCC map (3DDFA's Projected Normalized Coordinate Code) per 300W-LP sample.

Per sample ``<subset>/<name>`` (one item each), under ``--out``:

- ``<subset>/<name>_pncc.png``  (H, W, 3) uint8 RGB = round(255 · NCC x, y, z), background 0,
  the size of the input image;
- ``<subset>/<name>_pncc.npy``  the same map as float32 in [0, 1] (``npy: true``).

The NCC code comes from the model's mean (``code: v1``, all vertices; ``code: v2``, the non-neck
vertices, normalised on that subset, the 3DDFA_V2 variant; docs/formats.md#ncc-codes). The face
is loaded and projected by :func:`face3d_data.w300lp.load_sample` and z-buffered by
:func:`face3d_data.render.render_pncc`. See docs/rendering.md.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.io import read_image, save_npy, write_image
from face3d_data.morphable import REGIONS
from face3d_data.morphable.require import require_model
from face3d_data.render import ncc_code, render_pncc
from face3d_data.w300lp import check_data_root, dataset_inputs, load_sample
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class PnccOptions(StageOptions):
    data_root: str | None
    model: str
    code: Literal["v1", "v2"]
    npy: bool


class PnccResources:
    """The model, the triangles drawn and the per-vertex NCC code (zeros where not drawn)."""

    def __init__(self, cfg: PnccOptions):
        self.model = require_model(cfg.model, needs=("triangles",), purpose="PNCC maps")
        mean = np.asarray(self.model.mean, np.float64)
        if cfg.code == "v1":
            self.triangles, self.code = self.model.triangles, ncc_code(mean)
        else:
            if self.model.regions is None:
                raise ConfigError("code: v2 needs a model with regions (to drop the neck)")
            keep = self.model.regions != REGIONS["neck"]
            self.code = np.zeros((len(mean), 3), np.float32)
            self.code[keep] = ncc_code(mean, keep=np.flatnonzero(keep))
            self.triangles = self.model.triangles[keep[self.model.triangles].all(1)]


class PnccStage(Stage):
    name = "pncc"
    summary = "PNCC maps (3DDFA v1/v2 NCC code, z-buffered) for every sample of a 300W-LP-format dataset."
    Options = PnccOptions
    input_options = ("data_root",)
    asset_options = ("model",)

    def check_config(self, cfg: PnccOptions):
        check_data_root(cfg.data_root)

    def setup(self, cfg: PnccOptions):
        return PnccResources(cfg)

    def list_items(self, cfg: PnccOptions, ctx):
        return [Item(key, inputs) for key, inputs in dataset_inputs(cfg.data_root, exclude=[ctx.out_dir])]

    def process(self, item, cfg: PnccOptions, ctx):
        res = ctx.resources
        sample = load_sample(item.inputs["image"], item.inputs["mat"], res.model)
        h, w = sample.image_hw
        pncc = render_pncc(sample.projected, res.triangles, res.code, h, w)
        outputs = [item.key + "_pncc.png"]
        write_image(ctx.path(outputs[0]), np.round(pncc * 255).astype(np.uint8))
        if cfg.npy:
            outputs.append(item.key + "_pncc.npy")
            save_npy(ctx.path(outputs[1]), pncc)
        covered = pncc.any(-1)
        return {"outputs": outputs, "image_height": h, "image_width": w,
                "coverage": float(covered.mean())}

    def preview(self, record, cfg: PnccOptions, ctx):
        image = read_image(record["inputs"]["image"])
        pncc = read_image(ctx.path(record["key"] + "_pncc.png"))
        return np.concatenate([image, pncc], axis=1)
