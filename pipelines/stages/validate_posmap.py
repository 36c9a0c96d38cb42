"""Stage ``validate_posmap``: check the output of the ``posmap`` stage.

For every sample of a posmap output folder (read from its manifest): decode the 68 keypoints from
the position map (``decode``: exact = the UV assets' keypoint weights, reproducing the landmark
vertices up to float rounding; bilinear = bilinear at the landmark UVs; nearest = PRNet's integer
``uv_kpt_ind``), compare them with the model landmarks projected with the sample's labels and
mapped into the recorded crop (NME: mean error / sqrt(w·h) of the landmark box), count holes (face
texels that are all 0) and NaN/inf values (:func:`face3d_data.posmap.check_posmap`). The labels
are read from the dataset the posmap run read (``data_root``, default the one its manifest
records). ``finish`` writes ``report.json`` (summary and outliers), ``nme_histogram.png`` and
``worst.png`` (the worst crops: green = projected, red = decoded). See docs/prnet.md.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from typing import Literal

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import load_npy, read_image, write_image, write_text
from face3d_data.morphable.require import require_model
from face3d_data.posmap import CropBox, build_uv_assets, check_posmap
from face3d_data.viz import contact_sheet, draw_landmarks, histogram_picture
from face3d_data.w300lp import check_data_root, landmarks_from_params, read_labels
from pipelines.core import Item, Stage, StageOptions, read_manifest


@dataclasses.dataclass(frozen=True)
class ValidatePosmapOptions(StageOptions):
    posmap_dir: str | None
    data_root: str | None
    model: str | None
    decode: Literal["exact", "bilinear", "nearest"]
    outlier_nme: float
    worst_count: int


def posmap_manifests(folder: str) -> list[str]:
    """The posmap run's manifest files (one, or one per shard)."""
    paths = sorted(glob.glob(os.path.join(folder, "manifest*.parquet")))
    if not paths:
        raise ConfigError(f"posmap_dir: no manifest*.parquet in {folder!r}; run the posmap stage first")
    return paths


def read_posmap_run(folder: str) -> tuple[dict, dict]:
    """(``{key: record}`` of the successful samples, the posmap run's configuration)."""
    records, posmap_cfg = {}, {}
    for path in posmap_manifests(folder):
        frame, meta = read_manifest(path)
        if meta.get("stage") not in (None, "posmap"):
            raise ConfigError(f"posmap_dir: {path} is a manifest of stage {meta.get('stage')!r}, not posmap")
        posmap_cfg = meta.get("config", posmap_cfg)
        for row in frame.to_dict("records"):
            if row.get("status", "ok") == "ok":
                records[row["key"]] = row
    return records, posmap_cfg


class ValidationResources:
    """The posmap run's records, its configuration, model and UV assets."""

    def __init__(self, cfg: ValidatePosmapOptions):
        self.records, self.posmap_cfg = read_posmap_run(cfg.posmap_dir)
        spec = cfg.model or self.posmap_cfg.get("model") or "builtin"
        self.model = require_model(spec, needs=("triangles", "uv"), purpose="position maps")
        try:
            self.assets = build_uv_assets(self.model, int(self.posmap_cfg.get("resolution", 256)),
                                          self.posmap_cfg.get("weight_levels") or {})
        except ValueError as exc:
            raise ConfigError(f"model: {exc}") from None


def label_path(record: dict, cfg: ValidatePosmapOptions, posmap_cfg: dict) -> str:
    """The label file of a posmap record, in ``data_root`` when given (same relative path)."""
    mat = record["inputs"]["mat"]
    recorded = posmap_cfg.get("data_root")
    if cfg.data_root and recorded:
        return os.path.join(cfg.data_root, os.path.relpath(mat, recorded))
    return mat


def evaluate(res: ValidationResources, record: dict, posmap_path: str, mat_path: str, decode: str):
    """:class:`face3d_data.posmap.PosmapCheck` of one sample (files named on errors)."""
    labels = read_labels(mat_path)
    hw = (int(record["image_height"]), int(record["image_width"]))
    landmarks = landmarks_from_params(res.model, labels, hw, path=mat_path)
    box = CropBox(np.array([record["crop_cx"], record["crop_cy"]]), float(record["crop_size"]))
    try:
        return check_posmap(load_npy(posmap_path), landmarks, box, res.assets, decode)
    except ValueError as exc:
        raise InputError(posmap_path, str(exc)) from None


class ValidatePosmapStage(Stage):
    name = "validate_posmap"
    summary = "Check position maps: decoded vs projected keypoints (NME), holes, NaNs; report."
    Options = ValidatePosmapOptions
    input_options = ("posmap_dir", "data_root")
    asset_options = ("model",)

    def input_paths(self, cfg: ValidatePosmapOptions) -> list[str]:
        paths = super().input_paths(cfg)
        if not cfg.data_root and cfg.posmap_dir and os.path.isdir(cfg.posmap_dir):
            recorded = read_posmap_run(cfg.posmap_dir)[1].get("data_root")
            if recorded:
                paths.append(str(recorded))
        return paths

    def check_config(self, cfg: ValidatePosmapOptions):
        check_data_root(cfg.posmap_dir, option="posmap_dir")
        posmap_manifests(cfg.posmap_dir)
        if cfg.data_root:
            check_data_root(cfg.data_root)
        if cfg.worst_count < 0:
            raise ConfigError("worst_count: expected an integer >= 0")

    def setup(self, cfg: ValidatePosmapOptions):
        return ValidationResources(cfg)

    def list_items(self, cfg: ValidatePosmapOptions, ctx):
        records, posmap_cfg = read_posmap_run(cfg.posmap_dir)
        items = []
        for key in sorted(records):
            row = records[key]
            npy = next(p for p in row["outputs"] if p.endswith(".npy"))
            items.append(Item(key=key, inputs={"posmap": os.path.join(cfg.posmap_dir, npy),
                                               "mat": label_path(row, cfg, posmap_cfg)}))
        return items

    def process(self, item, cfg: ValidatePosmapOptions, ctx):
        res = ctx.resources
        check = evaluate(res, res.records[item.key], item.inputs["posmap"], item.inputs["mat"], cfg.decode)
        nme, errors = check.nme()
        if not np.isfinite(nme):
            nme = float("inf")
        return {"outputs": [], "nme": nme, "mean_error_px": float(errors.mean()),
                "max_error_px": float(errors.max()), "holes": check.holes,
                "non_finite": check.non_finite}

    def finish(self, cfg: ValidatePosmapOptions, ctx, records):
        rows = [r for r in records if r.get("status", "ok") == "ok"]
        nme = np.array([r["nme"] for r in rows], np.float64)
        threshold = cfg.outlier_nme
        outliers = sorted((r for r in rows if not r["nme"] <= threshold or r["holes"]
                           or r["non_finite"]), key=lambda r: -r["nme"])
        finite = nme[np.isfinite(nme)]
        stats = {name: (float(fn(finite)) if finite.size else None) for name, fn in
                 (("mean", np.mean), ("median", np.median), ("max", np.max),
                  ("p95", lambda a: np.percentile(a, 95)))}
        report = {
            "posmap_dir": os.path.abspath(cfg.posmap_dir), "decode": cfg.decode,
            # keypoints the exact decoder reproduces exactly (others: bilinear fallback)
            "exact_keypoints": (int(ctx.resources.assets.kpt_weights.exact.sum())
                                if rows and cfg.decode == "exact" else None),
            "samples": len(rows), "nme": stats,
            "mean_error_px": float(np.mean([r["mean_error_px"] for r in rows])) if rows else None,
            "max_error_px": float(np.max([r["max_error_px"] for r in rows])) if rows else None,
            "samples_with_holes": sum(1 for r in rows if r["holes"]),
            "samples_with_non_finite": sum(1 for r in rows if r["non_finite"]),
            "outlier_nme": threshold,
            "outliers": [{"key": r["key"], "nme": r["nme"], "holes": r["holes"],
                          "non_finite": r["non_finite"]} for r in outliers],
        }
        write_text(ctx.path("report.json"), json.dumps(report, indent=2) + "\n")
        write_image(ctx.path("nme_histogram.png"), histogram_picture(finite, threshold))
        worst = sorted(rows, key=lambda r: -r["nme"])[:cfg.worst_count]
        tiles, labels = [], []
        for r in worst:
            res = ctx.resources
            record = res.records[r["key"]]
            jpg = next(p for p in record["outputs"] if p.endswith(".jpg"))
            check = evaluate(res, record, r["inputs"]["posmap"], r["inputs"]["mat"], cfg.decode)
            crop = read_image(os.path.join(cfg.posmap_dir, jpg))
            tile = draw_landmarks(crop, check.expected, color=(0, 255, 0))
            tiles.append(draw_landmarks(tile, check.decoded, color=(255, 0, 0)))
            labels.append(f"{r['key'].rsplit('/', 1)[-1]} {r['nme']:.4f}")
        if tiles:
            write_image(ctx.path("worst.png"), contact_sheet(tiles, labels=labels))
