"""Stage ``posmap``: PRNet training pairs (crop + UV position map) for a 300W-LP-format dataset.

Per sample ``<subset>/<name>`` (one item each), under ``--out``:

- ``<subset>/<name>.jpg``         the R×R crop (R = ``resolution``)
- ``<subset>/<name>.npy``         the (R, R, 3) position map, crop pixels, float32 (``dtype``)
- ``<subset>/<name>_posmap.png``  a picture of it, for one sample in ``posmap_png_every``

The manifest records each crop (centre, side, drawn jitter). ``finish`` writes
``datalist/posmap_<split>.txt`` (lines ``image label``, paths relative to ``--out``; splits by face
identity, :mod:`face3d_data.posmap.splits`) and ``uv-data/`` (the model's assets at the same
resolution, as written by the ``uv_assets`` stage). See docs/prnet.md and datalist/README.md.
"""

from __future__ import annotations

import os
import zlib
from collections import defaultdict

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import load_npy, read_image, read_mat, save_npy, write_datalist, write_image
from face3d_data.posmap import (STORAGE_DTYPES, build_uv_assets, identity_of, make_posmap_sample,
                                preview_image, projection_affine, split_of, storage_array)
from pipelines.core import Item, Stage
from pipelines.stages.uv_assets import check_levels, write_uv_assets

LABEL_SCHEMA = {"Pose_Para": (7,), "Shape_Para": (None,)}


class PosmapResources:
    """What every worker loads once: the model and its UV assets."""

    def __init__(self, cfg):
        from face3d_data.morphable import load_model

        self.model = load_model(cfg["model"])
        try:
            self.assets = build_uv_assets(self.model, int(cfg["resolution"]),
                                          cfg.get("weight_levels") or {})
        except ValueError as exc:
            raise ConfigError(f"posmap: {exc}") from None


def batch_vertices(model, coefficients: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """Model-space vertices for several (shape, exp) coefficient pairs with one matrix product.

    Evaluating the (3N × K) basis is memory-bandwidth bound and the largest per-sample cost, so
    the runner hands this stage fixed batches of samples and the basis is read once per batch;
    identical coefficient sets (the views of one face, rotated copies) are evaluated once.
    Returns one read-only (N, 3) float32 array per pair. The result depends only on the batch's
    content, which the runner keeps fixed (see ``pipelines.core.Stage``).
    """
    keys = [b"%d:%d:" % (s.size, e.size) + s.tobytes() + e.tobytes() for s, e in coefficients]
    rows = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    if not rows:
        return []
    firsts = [coefficients[keys.index(key)] for key in rows]
    shapes = np.stack([np.pad(s, (0, model.n_shape - s.size)) for s, _ in firsts])
    exps = np.stack([np.pad(e, (0, model.n_exp - e.size)) for _, e in firsts]) if model.n_exp else None
    flat = model.vertices(shapes, exps)
    flat.flags.writeable = False
    return [flat[rows[key]] for key in keys]


def label_coefficients(model, fields: dict, path: str) -> tuple[np.ndarray, np.ndarray]:
    """(shape, exp) float64 vectors of a label file, checked against the model's mode counts."""
    shape = np.asarray(fields["Shape_Para"], np.float64).ravel()
    exp = np.asarray(fields.get("Exp_Para", np.zeros(0)), np.float64).ravel()
    if shape.size > model.n_shape or exp.size > model.n_exp:
        raise InputError(path, f"labels have {shape.size} shape / {exp.size} expression "
                               f"coefficients; model {model.name!r} has {model.n_shape} / "
                               f"{model.n_exp}")
    return shape, exp


def model_vertices(model, fields: dict, path: str) -> np.ndarray:
    """(N, 3) float32 model-space vertices from a label file's ``Shape_Para`` / ``Exp_Para``."""
    shape, exp = label_coefficients(model, fields, path)
    return model.vertices(shape, exp if exp.size else None)


def png_wanted(key: str, every: int) -> bool:
    """Whether the sample ``key`` gets a ``_posmap.png`` picture (about one in ``every``)."""
    return every > 0 and zlib.crc32(key.encode("utf-8")) % every == 0


def output_names(key: str) -> dict:
    """Relative output paths of one sample."""
    return {"crop": key + ".jpg", "posmap": key + ".npy", "png": key + "_posmap.png"}


class PosmapStage(Stage):
    name = "posmap"
    summary = "PRNet training pairs: 256 crop + UV position map per 300W-LP-format sample, datalists."
    batch_size = 8  # samples per basis evaluation (see batch_vertices)

    def check_config(self, cfg):
        if not cfg.get("data_root"):
            raise ConfigError("posmap: --data-root is required")
        if not os.path.isdir(cfg["data_root"]):
            raise ConfigError(f"posmap: data_root {cfg['data_root']!r} is not a folder")
        if cfg["dtype"] not in STORAGE_DTYPES:
            raise ConfigError(f"dtype: expected one of {STORAGE_DTYPES}, got {cfg['dtype']!r}")
        check_levels(cfg)
        lo, hi = (float(v) for v in cfg["size_jitter"])
        if not (0 < lo <= hi) or float(cfg["scale"]) <= 0 or float(cfg["center_jitter"]) < 0:
            raise ConfigError("scale > 0, center_jitter >= 0 and 0 < size_jitter[0] <= size_jitter[1] required")
        if not isinstance(cfg["splits"], dict) or not cfg["splits"]:
            raise ConfigError(f"splits: expected a mapping split -> fraction, got {cfg['splits']!r}")
        try:
            split_of("x", cfg["splits"])
        except ValueError as exc:
            raise ConfigError(f"splits: {exc}") from None

    def setup(self, cfg):
        return PosmapResources(cfg)

    def list_items(self, cfg, ctx):
        from face3d_data.w300lp import find_samples

        return [Item(key=s.key, inputs={"image": str(s.image_path), "mat": str(s.mat_path)})
                for s in find_samples(cfg["data_root"])]

    def process_batch(self, items, cfg, ctxs):
        res = ctxs[0].resources
        results: list = [None] * len(items)
        loaded = []
        for i, item in enumerate(items):
            try:
                image = read_image(item.inputs["image"])
                fields = read_mat(item.inputs["mat"], required=LABEL_SCHEMA, finite=("Exp_Para",))
                coefficients = label_coefficients(res.model, fields, item.inputs["mat"])
                loaded.append((i, image, fields, coefficients))
            except Exception as exc:  # reported for this item only
                results[i] = exc
        vertices = batch_vertices(res.model, [c for _, _, _, c in loaded])
        for (i, image, fields, _), verts in zip(loaded, vertices):
            try:
                results[i] = self._write_sample(items[i], cfg, ctxs[i], res, image, fields, verts)
            except Exception as exc:
                results[i] = exc
        return results

    @staticmethod
    def _write_sample(item, cfg, ctx, res, image, fields, vertices) -> dict:
        """Crop, position map and files of one sample; returns its manifest columns."""
        try:
            sample = make_posmap_sample(
                image, vertices, res.model.landmarks, res.assets,
                projection=projection_affine(fields["Pose_Para"], image.shape[:2]),
                rng=ctx.rng if cfg["jitter"] else None, scale=float(cfg["scale"]),
                center_jitter=float(cfg["center_jitter"]),
                size_jitter=tuple(float(v) for v in cfg["size_jitter"]))
        except ValueError as exc:
            raise InputError(item.inputs["mat"], str(exc)) from None
        names = output_names(item.key)
        write_image(ctx.path(names["crop"]), sample.crop, quality=int(cfg["jpeg_quality"]))
        save_npy(ctx.path(names["posmap"]), storage_array(sample.posmap, cfg["dtype"]))
        outputs = [names["crop"], names["posmap"]]
        if png_wanted(item.key, int(cfg["posmap_png_every"])):
            write_image(ctx.path(names["png"]), preview_image(sample.posmap))
            outputs.append(names["png"])
        dx, dy, size_factor = sample.box.jitter
        return {"outputs": outputs, "image_height": image.shape[0], "image_width": image.shape[1],
                "crop_cx": float(sample.box.center[0]), "crop_cy": float(sample.box.center[1]),
                "crop_size": float(sample.box.size), "jitter_dx": dx, "jitter_dy": dy,
                "jitter_scale": size_factor, "identity": identity_of(item.key)}

    def finish(self, cfg, ctx, records):
        by_split = defaultdict(list)
        for record in records:
            if record.get("status", "ok") != "ok":
                continue
            identity = record.get("identity") or identity_of(record["key"])
            split = split_of(identity, cfg["splits"], str(cfg.get("split_salt", "")))
            names = output_names(record["key"])
            by_split[split].append((ctx.path(names["crop"]), ctx.path(names["posmap"])))
        for split in cfg["splits"]:
            write_datalist(ctx.path("datalist", f"posmap_{split}.txt"), sorted(by_split[split]),
                           root=ctx.out_dir)
        write_uv_assets(lambda n: ctx.path("uv-data", n), ctx.resources.assets,
                        ctx.resources.model.name)

    def preview(self, record, cfg, ctx):
        names = output_names(record["key"])
        crop = read_image(ctx.path(names["crop"]))
        posmap = load_npy(ctx.path(names["posmap"])).astype(np.float32)
        return np.concatenate([crop, preview_image(posmap)], axis=1)
