"""Stage ``depth``: z-buffer depth maps per sample of a 300W-LP-format dataset.

Per sample ``<subset>/<name>`` (one item each), under ``--out``, the size of the input image:

- ``<subset>/<name>_depth.npy``   (H, W) float32 raw projected z (image units, larger = closer),
  0 where no face covers the pixel;
- ``<subset>/<name>_mask.png``    (H, W) uint8 validity mask, 255 = covered;
- ``<subset>/<name>_depth.png``   normalised picture, nearer = brighter, background 0: 8-bit, or
  16-bit single channel with ``visual_bits: 16``; the range is the face's min..max depth.

The face is loaded and projected by :func:`face3d_data.w300lp.load_sample` (z = f·(R·S)_z + tz,
:func:`face3d_data.w300lp.pose.project`), rendered by :func:`face3d_data.render.render_depth`.
See docs/rendering.md.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import numpy as np

from face3d_data.io import load_npy, read_image, save_npy, write_image, write_png16
from face3d_data.morphable.require import require_model
from face3d_data.render import DepthMap, depth_visual, render_depth
from face3d_data.w300lp import check_data_root, dataset_inputs, load_sample
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class DepthOptions(StageOptions):
    data_root: str | None
    model: str
    visual_bits: Literal[8, 16]


class DepthStage(Stage):
    name = "depth"
    summary = "Depth maps (raw float32 z, validity mask, 8/16-bit picture) per 300W-LP-format sample."
    Options = DepthOptions
    input_options = ("data_root",)
    asset_options = ("model",)

    def check_config(self, cfg: DepthOptions):
        check_data_root(cfg.data_root)

    def setup(self, cfg: DepthOptions):
        return require_model(cfg.model, needs=("triangles",), purpose="depth maps")

    def list_items(self, cfg: DepthOptions, ctx):
        return [Item(key, inputs) for key, inputs in dataset_inputs(cfg.data_root, exclude=[ctx.out_dir])]

    def process(self, item, cfg: DepthOptions, ctx):
        model = ctx.resources
        sample = load_sample(item.inputs["image"], item.inputs["mat"], model)
        h, w = sample.image_hw
        dm = render_depth(sample.projected, model.triangles, h, w)
        names = [item.key + "_depth.npy", item.key + "_mask.png", item.key + "_depth.png"]
        save_npy(ctx.path(names[0]), dm.depth)
        write_image(ctx.path(names[1]), dm.mask.astype(np.uint8) * 255)
        visual = depth_visual(dm, bits=cfg.visual_bits)
        if visual.dtype == np.uint16:
            write_png16(ctx.path(names[2]), visual)
        else:
            write_image(ctx.path(names[2]), visual)
        z = dm.depth[dm.mask]
        return {"outputs": names, "image_height": h, "image_width": w,
                "coverage": float(dm.mask.mean()),
                "z_min": float(z.min()) if z.size else None, "z_max": float(z.max()) if z.size else None}

    def preview(self, record, cfg: DepthOptions, ctx):
        image = read_image(record["inputs"]["image"])
        depth = load_npy(ctx.path(record["key"] + "_depth.npy"))
        grey = depth_visual(DepthMap(depth, depth != 0))
        return np.concatenate([image, np.repeat(grey[..., None], 3, axis=2)], axis=1)
