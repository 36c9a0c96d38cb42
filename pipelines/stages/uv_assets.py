"""Stage ``uv_assets``: PRNet's ``uv-data`` files for any model at any resolution.

A single item writes, under ``--out``, the files of
:func:`face3d_data.posmap.uv_assets.write_uv_assets` (``uv_face_mask.png``,
``uv_weight_mask.png``, ``uv_kpt_ind.txt``, ``uv_kpt_uv.txt``, ``uv_kpt_weights.npz``,
``face_ind.txt``, ``triangles.txt``, ``uv_assets.json``). All files are deterministic (same model
and options, same bytes). See docs/prnet.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from face3d_data.errors import ConfigError
from face3d_data.io import read_image
from face3d_data.morphable.require import require_model
from face3d_data.posmap import build_uv_assets, check_weight_levels, write_uv_assets
from face3d_data.viz import to_uint8
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class UVAssetsOptions(StageOptions):
    model: str
    resolution: int
    weight_levels: dict[str, int]


def check_uv_options(resolution: int, weight_levels) -> None:
    """ConfigError for a resolution below 8 or bad weight levels (shared with ``posmap``'s options)."""
    if resolution < 8:
        raise ConfigError(f"resolution: expected an integer >= 8, got {resolution!r}")
    try:
        check_weight_levels(weight_levels)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


class UVAssetsStage(Stage):
    name = "uv_assets"
    summary = "PRNet uv-data (face/weight masks, keypoint indices, face_ind, triangles) at any resolution."
    preview_count = 1
    Options = UVAssetsOptions
    asset_options = ("model",)

    def check_config(self, cfg: UVAssetsOptions):
        check_uv_options(cfg.resolution, cfg.weight_levels)

    def setup(self, cfg: UVAssetsOptions):
        model = require_model(cfg.model, needs=("triangles", "uv"), purpose="UV assets")
        try:
            return model, build_uv_assets(model, cfg.resolution, cfg.weight_levels)
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None

    def list_items(self, cfg: UVAssetsOptions, ctx):
        return [Item(key=f"uv_assets_{cfg.resolution}", inputs={})]

    def process(self, item, cfg: UVAssetsOptions, ctx):
        model, assets = ctx.resources
        outputs = write_uv_assets(ctx.path, assets, model.name)
        return {"outputs": outputs, "resolution": assets.resolution,
                "face_texels": int(assets.face_ind.size),
                "triangles": int(len(assets.grid_triangles))}

    def preview(self, record, cfg: UVAssetsOptions, ctx):
        face = read_image(ctx.path("uv_face_mask.png"))
        weight = read_image(ctx.path("uv_weight_mask.png"))
        return np.concatenate([face, to_uint8(weight)], axis=1)
