"""Stage ``depth``: z-buffer depth maps per sample of a 300W-LP-format dataset.

Per sample ``<subset>/<name>`` (one item each), under ``--out``, the size of the input image:

- ``<subset>/<name>_depth.npy``   (H, W) float32 raw projected z (image units, larger = closer),
  0 where no face covers the pixel;
- ``<subset>/<name>_mask.png``    (H, W) uint8 validity mask, 255 = covered;
- ``<subset>/<name>_depth.png``   normalised picture, nearer = brighter, background 0: 8-bit, or
  16-bit single channel with ``visual_bits: 16``; the range is the face's min..max depth.

z comes from :func:`face3d_data.w300lp.pose.project` (z = f·(R·S)_z + tz), rendered by
:func:`face3d_data.render.render_depth`. See docs/rendering.md.
"""

from __future__ import annotations

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.io import read_image, save_npy, write_image, write_png16
from face3d_data.render import DepthMap, depth_visual, render_depth
from pipelines.core import Stage
from pipelines.stages.pncc import check_dataset_config, dataset_items, load_face_model, projected_face


class DepthStage(Stage):
    name = "depth"
    summary = "Depth maps (raw float32 z, validity mask, 8/16-bit picture) per 300W-LP-format sample."

    def check_config(self, cfg):
        check_dataset_config(cfg, "depth")
        if cfg["visual_bits"] not in (8, 16):
            raise ConfigError(f"visual_bits: expected 8 or 16, got {cfg['visual_bits']!r}")

    def setup(self, cfg):
        return load_face_model(cfg, "depth")

    def list_items(self, cfg, ctx):
        return dataset_items(cfg)

    def process(self, item, cfg, ctx):
        model = ctx.resources
        image, vertices = projected_face(model, item)
        h, w = image.shape[:2]
        dm = render_depth(vertices, model.triangles, h, w)
        names = [item.key + "_depth.npy", item.key + "_mask.png", item.key + "_depth.png"]
        save_npy(ctx.path(names[0]), dm.depth)
        write_image(ctx.path(names[1]), dm.mask.astype(np.uint8) * 255)
        visual = depth_visual(dm, bits=int(cfg["visual_bits"]))
        if visual.dtype == np.uint16:
            write_png16(ctx.path(names[2]), visual)
        else:
            write_image(ctx.path(names[2]), visual)
        z = dm.depth[dm.mask]
        return {"outputs": names, "height": h, "width": w, "coverage": float(dm.mask.mean()),
                "z_min": float(z.min()) if z.size else None, "z_max": float(z.max()) if z.size else None}

    def preview(self, record, cfg, ctx):
        from face3d_data.io import load_npy

        image = read_image(record["inputs"]["image"])
        depth = load_npy(ctx.path(record["key"] + "_depth.npy"))
        grey = depth_visual(DepthMap(depth, depth != 0))
        return np.concatenate([image, np.repeat(grey[..., None], 3, axis=2)], axis=1)
