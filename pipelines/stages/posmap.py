"""Stage ``posmap``: PRNet training pairs (crop + UV position map) for a 300W-LP-format dataset.

Per sample ``<subset>/<name>`` (one item each), under ``--out``:

- ``<subset>/<name>.jpg``         the R×R crop (R = ``resolution``)
- ``<subset>/<name>.npy``         the (R, R, 3) position map, crop pixels, float32 (``dtype``)
- ``<subset>/<name>_posmap.png``  a picture of it, for one sample in ``posmap_png_every``

The manifest records each crop (centre, side, drawn jitter). A sample whose image covers less
than ``min_image_coverage`` of its crop region (a tiny image, a face outside the picture) is a
failures row. ``finish`` writes ``datalist/posmap_<split>.txt`` (lines ``image label``, paths
relative to ``--out``; splits by face identity, :mod:`face3d_data.posmap.splits`) and ``uv-data/``
(the model's assets at the same resolution, as the ``uv_assets`` stage writes them). See
docs/prnet.md and datalist/README.md.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Literal

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import load_npy, read_image, save_npy, write_datalist, write_image
from face3d_data.morphable.require import require_model
from face3d_data.posmap import (
    CoverageError,
    batch_vertices,
    build_uv_assets,
    check_weight_levels,
    identity_of,
    make_posmap_sample,
    preview_image,
    projection_affine,
    selected_by_key,
    split_of,
    storage_array,
    write_uv_assets,
)
from face3d_data.w300lp import check_data_root, dataset_inputs, model_coefficients, read_labels
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class PosmapOptions(StageOptions):
    data_root: str | None
    model: str
    resolution: int
    scale: float
    jitter: bool
    center_jitter: float
    size_jitter: tuple[float, float]
    dtype: Literal["float32", "float16"]
    posmap_png_every: int
    jpeg_quality: int
    synthesis_group: int
    min_image_coverage: float
    splits: dict[str, float]
    split_salt: str
    weight_levels: dict[str, int]


class PosmapResources:
    """What every worker loads once: the model and its UV assets."""

    def __init__(self, cfg: PosmapOptions):
        self.model = require_model(cfg.model, needs=("triangles", "uv"), purpose="position maps")
        try:
            self.assets = build_uv_assets(self.model, cfg.resolution, cfg.weight_levels)
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None


def output_names(key: str) -> dict:
    """Relative output paths of one sample."""
    return {"crop": key + ".jpg", "posmap": key + ".npy", "png": key + "_posmap.png"}


class PosmapStage(Stage):
    name = "posmap"
    summary = "PRNet training pairs: 256 crop + UV position map per 300W-LP-format sample, datalists."
    # Samples per runner batch. The outputs are those of one basis product per ``synthesis_group``
    # consecutive samples of the sorted item list (default 8: the runner batches of 8 of early
    # versions), so batch_size must stay a multiple of every allowed group for the groups to fall
    # where they did. Within a batch, the groups whose bits a product over the whole batch gives are
    # taken from one such product (face3d_data.morphable.streamed): 128 faces per product cost
    # ~0.8 ms each on a BFM-sized basis against ~1.1 ms for 64 (BLAS packing is paid per product).
    batch_size = 128
    Options = PosmapOptions
    input_options = ("data_root",)
    asset_options = ("model",)

    def check_config(self, cfg: PosmapOptions):
        check_data_root(cfg.data_root)
        if cfg.resolution < 8:
            raise ConfigError(f"resolution: expected an integer >= 8, got {cfg.resolution}")
        try:
            check_weight_levels(cfg.weight_levels)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        lo, hi = cfg.size_jitter
        if not (0 < lo <= hi) or cfg.scale <= 0 or cfg.center_jitter < 0:
            raise ConfigError("scale > 0, center_jitter >= 0 and 0 < size_jitter[0] <= size_jitter[1] required")
        if not 0 <= cfg.min_image_coverage <= 1:
            raise ConfigError(f"min_image_coverage: expected 0..1, got {cfg.min_image_coverage}")
        if not 1 <= cfg.jpeg_quality <= 100:
            raise ConfigError("jpeg_quality: expected 1..100")
        if cfg.synthesis_group < 1 or self.batch_size % cfg.synthesis_group:
            raise ConfigError(f"synthesis_group: expected a divisor of {self.batch_size} "
                              f"(1, 2, 4, ..., {self.batch_size}), got {cfg.synthesis_group}")
        if not cfg.splits:
            raise ConfigError(f"splits: expected a mapping split -> fraction, got {cfg.splits!r}")
        try:
            split_of("x", cfg.splits)
        except ValueError as exc:
            raise ConfigError(f"splits: {exc}") from None

    def setup(self, cfg: PosmapOptions):
        return PosmapResources(cfg)

    def list_items(self, cfg: PosmapOptions, ctx):
        return [Item(key, inputs) for key, inputs in dataset_inputs(cfg.data_root, exclude=[ctx.out_dir])]

    def process_batch(self, items, cfg: PosmapOptions, ctxs):
        res = ctxs[0].resources
        results: list = [None] * len(items)
        loaded, sizes = [], []
        for start in range(0, len(items), cfg.synthesis_group):
            sizes.append(0)
            for i in range(start, min(len(items), start + cfg.synthesis_group)):
                item = items[i]
                try:
                    image = read_image(item.inputs["image"])
                    labels = read_labels(item.inputs["mat"])
                    coefficients = model_coefficients(res.model, labels, item.inputs["mat"])
                    loaded.append((i, image, labels, coefficients))
                    sizes[-1] += 1
                except Exception as exc:  # noqa: BLE001 - reported for this item only
                    results[i] = exc
        vertices = batch_vertices(res.model, [c for _, _, _, c in loaded], group=sizes)
        for (i, image, labels, _), verts in zip(loaded, vertices):
            try:
                results[i] = self._write_sample(items[i], cfg, ctxs[i], res, image, labels, verts)
            except Exception as exc:  # noqa: BLE001 - reported for this item only
                results[i] = exc
        return results

    @staticmethod
    def _write_sample(item, cfg: PosmapOptions, ctx, res, image, labels, vertices) -> dict:
        """Crop, position map and files of one sample; returns its manifest columns."""
        try:
            sample = make_posmap_sample(
                image, vertices, res.model.landmarks, res.assets,
                projection=projection_affine(labels.pose_para, image.shape[:2]),
                rng=ctx.rng if cfg.jitter else None, scale=cfg.scale,
                center_jitter=cfg.center_jitter, size_jitter=tuple(cfg.size_jitter),
                min_coverage=cfg.min_image_coverage)
        except CoverageError as exc:
            raise InputError(item.inputs["image"], str(exc)) from None
        except ValueError as exc:
            raise InputError(item.inputs["mat"], str(exc)) from None
        names = output_names(item.key)
        write_image(ctx.path(names["crop"]), sample.crop, quality=cfg.jpeg_quality)
        save_npy(ctx.path(names["posmap"]), storage_array(sample.posmap, cfg.dtype))
        outputs = [names["crop"], names["posmap"]]
        if selected_by_key(item.key, cfg.posmap_png_every):
            write_image(ctx.path(names["png"]), preview_image(sample.posmap))
            outputs.append(names["png"])
        dx, dy, size_factor = sample.box.jitter
        return {"outputs": outputs, "image_height": image.shape[0], "image_width": image.shape[1],
                "crop_cx": float(sample.box.center[0]), "crop_cy": float(sample.box.center[1]),
                "crop_size": float(sample.box.size), "jitter_dx": dx, "jitter_dy": dy,
                "jitter_scale": size_factor, "identity": identity_of(item.key)}

    def finish(self, cfg: PosmapOptions, ctx, records):
        by_split = defaultdict(list)
        for record in records:
            if record.get("status", "ok") != "ok":
                continue
            identity = record.get("identity") or identity_of(record["key"])
            split = split_of(identity, cfg.splits, cfg.split_salt)
            names = output_names(record["key"])
            by_split[split].append((ctx.path(names["crop"]), ctx.path(names["posmap"])))
        for split in cfg.splits:
            write_datalist(ctx.path("datalist", f"posmap_{split}.txt"), sorted(by_split[split]),
                           root=ctx.out_dir)
        write_uv_assets(lambda n: ctx.path("uv-data", n), ctx.resources.assets,
                        ctx.resources.model.name)

    def preview(self, record, cfg: PosmapOptions, ctx):
        names = output_names(record["key"])
        crop = read_image(ctx.path(names["crop"]))
        posmap = load_npy(ctx.path(names["posmap"])).astype(np.float32)
        return np.concatenate([crop, preview_image(posmap)], axis=1)
