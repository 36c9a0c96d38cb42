"""Stage ``validate_posmap``: check the output of the ``posmap`` stage.

For every sample of a posmap output folder (read from its manifest): decode the 68 keypoints from
the position map (``decode``: exact = the UV assets' keypoint weights, reproducing the landmark
vertices up to float rounding; bilinear = bilinear at the landmark UVs; nearest = PRNet's integer
``uv_kpt_ind``), compare them with the model landmarks projected with the sample's labels and
mapped into the recorded crop (NME: mean error / sqrt(w·h) of the landmark box), count holes (face
texels that are all 0) and NaN/inf values. ``finish`` writes ``report.json`` (summary and
outliers), ``nme_histogram.png`` and ``worst.png`` (the worst crops: green = projected, red =
decoded). See docs/prnet.md.
"""

from __future__ import annotations

import glob
import json
import os

import cv2
import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import load_npy, read_image, read_mat, write_image, write_text
from face3d_data.w300lp.pose import project
from face3d_data.posmap import (build_uv_assets, crop_matrix, crop_vertices, decode_landmarks,
                                landmark_nme, posmap_defects)
from face3d_data.posmap.crop import CropBox
from face3d_data.viz import contact_sheet, draw_landmarks
from pipelines.core import Item, Stage, read_manifest
from pipelines.stages.posmap import LABEL_SCHEMA, model_vertices

DECODERS = ("exact", "bilinear", "nearest")


def posmap_manifests(folder: str) -> list[str]:
    """The posmap run's manifest files (one, or one per shard)."""
    paths = sorted(glob.glob(os.path.join(folder, "manifest*.parquet")))
    if not paths:
        raise ConfigError(f"validate_posmap: no manifest*.parquet in {folder!r}; run the posmap stage first")
    return paths


class ValidationResources:
    """The posmap run's records, its configuration, model and UV assets."""

    def __init__(self, cfg):
        from face3d_data.morphable import load_model

        self.records, posmap_cfg = {}, {}
        for path in posmap_manifests(cfg["posmap_dir"]):
            frame, meta = read_manifest(path)
            if meta.get("stage") not in (None, "posmap"):
                raise ConfigError(f"{path}: a manifest of stage {meta.get('stage')!r}, not posmap")
            posmap_cfg = meta.get("config", posmap_cfg)
            for row in frame.to_dict("records"):
                if row.get("status", "ok") == "ok":
                    self.records[row["key"]] = row
        self.posmap_cfg = posmap_cfg
        spec = cfg.get("model") or posmap_cfg.get("model") or "builtin"
        self.model = load_model(spec)
        self.assets = build_uv_assets(self.model, int(posmap_cfg.get("resolution", 256)),
                                      posmap_cfg.get("weight_levels") or {})


def evaluate(res: ValidationResources, record: dict, posmap_path: str, decode: str) -> dict:
    """Decoded and expected keypoints (crop frame) plus defect counts of one sample."""
    fields = read_mat(record["inputs"]["mat"], required=LABEL_SCHEMA)
    vertices = model_vertices(res.model, fields, record["inputs"]["mat"])
    hw = (int(record["image_height"]), int(record["image_width"]))
    box = CropBox(np.array([record["crop_cx"], record["crop_cy"]]), float(record["crop_size"]))
    matrix = crop_matrix(box, res.assets.resolution)
    landmarks = project(vertices[res.model.landmarks], fields["Pose_Para"], hw)
    expected = crop_vertices(landmarks, matrix)[:, :2]
    posmap = load_npy(posmap_path).astype(np.float32)
    if posmap.shape != (res.assets.resolution, res.assets.resolution, 3):
        raise InputError(posmap_path, f"position map has shape {posmap.shape}, expected "
                                      f"({res.assets.resolution}, {res.assets.resolution}, 3)")
    kpt = {"exact": res.assets.kpt_weights, "bilinear": res.assets.kpt_uv,
           "nearest": res.assets.kpt_ind}[decode]
    decoded = decode_landmarks(posmap, kpt)[:, :2]
    holes, non_finite = posmap_defects(posmap, res.assets.face_mask)
    return {"expected": expected, "decoded": decoded, "holes": holes, "non_finite": non_finite}


def histogram_picture(values: np.ndarray, threshold: float, bins: int = 40) -> np.ndarray:
    """A bar chart of ``values`` (RGB uint8) with the outlier threshold as a red line."""
    h, w, margin = 300, 520, 40
    canvas = np.full((h, w, 3), 255, np.uint8)
    values = np.asarray(values, np.float64)
    top = max(float(values.max(initial=0.0)), threshold) * 1.05 or 1.0
    counts, edges = np.histogram(values, bins=bins, range=(0.0, top))
    peak = max(int(counts.max(initial=0)), 1)
    bar_w = (w - 2 * margin) / bins
    for i, c in enumerate(counts):
        x0 = int(margin + i * bar_w)
        y0 = int(h - margin - (h - 2 * margin) * c / peak)
        cv2.rectangle(canvas, (x0, y0), (int(x0 + bar_w) - 1, h - margin), (70, 110, 200), -1)
    xt = int(margin + (w - 2 * margin) * threshold / top)
    cv2.line(canvas, (xt, margin // 2), (xt, h - margin), (220, 30, 30), 1)
    cv2.line(canvas, (margin, h - margin), (w - margin, h - margin), (0, 0, 0), 1)
    for text, org in ((f"NME (n={values.size}, max count {peak})", (margin, 20)),
                      ("0", (margin - 4, h - margin + 18)),
                      (f"{top:.4f}", (w - margin - 40, h - margin + 18)),
                      (f"outlier > {threshold:g}", (min(xt + 4, w - 130), margin))):
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


class ValidatePosmap(Stage):
    name = "validate_posmap"
    summary = "Check position maps: decoded vs projected keypoints (NME), holes, NaNs; report."

    def check_config(self, cfg):
        if not cfg.get("posmap_dir"):
            raise ConfigError("validate_posmap: --posmap-dir is required")
        posmap_manifests(cfg["posmap_dir"])
        if cfg["decode"] not in DECODERS:
            raise ConfigError(f"decode: expected one of {DECODERS}, got {cfg['decode']!r}")

    def setup(self, cfg):
        return ValidationResources(cfg)

    def list_items(self, cfg, ctx):
        items = []
        for path in posmap_manifests(cfg["posmap_dir"]):
            frame, _ = read_manifest(path)
            for row in frame.to_dict("records"):
                if row.get("status", "ok") != "ok":
                    continue
                npy = next(p for p in row["outputs"] if p.endswith(".npy"))
                items.append(Item(key=row["key"], inputs={
                    "posmap": os.path.join(cfg["posmap_dir"], npy), "mat": row["inputs"]["mat"]}))
        return items

    def process(self, item, cfg, ctx):
        res = ctx.resources
        result = evaluate(res, res.records[item.key], item.inputs["posmap"], cfg["decode"])
        nme, errors = landmark_nme(result["decoded"], result["expected"])
        if not np.isfinite(nme):
            nme = float("inf")
        return {"outputs": [], "nme": nme, "mean_error_px": float(errors.mean()),
                "max_error_px": float(errors.max()), "holes": result["holes"],
                "non_finite": result["non_finite"]}

    def finish(self, cfg, ctx, records):
        rows = [r for r in records if r.get("status", "ok") == "ok"]
        nme = np.array([r["nme"] for r in rows], np.float64)
        threshold = float(cfg["outlier_nme"])
        outliers = sorted((r for r in rows if not r["nme"] <= threshold or r["holes"]
                           or r["non_finite"]), key=lambda r: -r["nme"])
        finite = nme[np.isfinite(nme)]
        stats = {name: (float(fn(finite)) if finite.size else None) for name, fn in
                 (("mean", np.mean), ("median", np.median), ("max", np.max),
                  ("p95", lambda a: np.percentile(a, 95)))}
        report = {
            "posmap_dir": os.path.abspath(cfg["posmap_dir"]), "decode": cfg["decode"],
            # keypoints the exact decoder reproduces exactly (others: bilinear fallback)
            "exact_keypoints": (int(ctx.resources.assets.kpt_weights.exact.sum())
                                if rows and cfg["decode"] == "exact" else None),
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
        worst = sorted(rows, key=lambda r: -r["nme"])[:int(cfg["worst_count"])]
        tiles, labels = [], []
        res = None
        for r in worst:
            res = res or ctx.resources
            record = res.records[r["key"]]
            npy = next(p for p in record["outputs"] if p.endswith(".npy"))
            jpg = next(p for p in record["outputs"] if p.endswith(".jpg"))
            result = evaluate(res, record, os.path.join(cfg["posmap_dir"], npy), cfg["decode"])
            crop = read_image(os.path.join(cfg["posmap_dir"], jpg))
            tile = draw_landmarks(crop, result["expected"], color=(0, 255, 0))
            tiles.append(draw_landmarks(tile, result["decoded"], color=(255, 0, 0)))
            labels.append(f"{r['key'].rsplit('/', 1)[-1]} {r['nme']:.4f}")
        if tiles:
            write_image(ctx.path("worst.png"), contact_sheet(tiles, labels=labels))
