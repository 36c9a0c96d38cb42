"""Stage ``evaluate_meshes``: NoW-style scan-to-mesh error of predicted meshes against scans.

One item per predicted mesh that has a scan of the same stem. The error is
:func:`face3d_data.registration.now.now_error` (crop around the nose by the NoW radius rule,
7-landmark similarity without reflection, rigid + scale refinement, point-to-surface distances), in
mm. Per item ``OUT/<stem>/distances.npy`` (float32, one distance per cropped scan vertex) and
``OUT/<stem>/error.json``; ``finish`` writes ``errors.csv``, ``cumulative.csv`` (fraction of
points under each threshold, 0-10 mm) and ``summary.json`` with the median / mean / std over
all cropped scan points of all scans, as NoW reports them.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import load_npy, save_npy, write_text
from face3d_data.io.scan import (
    find_scan_landmarks,
    find_scans,
    read_scan,
    read_scan_landmarks,
    scan_stem,
)
from pipelines.core import Item, Stage, StageOptions

_FORMATS = ("auto", "ibug68", "ibug51", "now7")


@dataclasses.dataclass(frozen=True)
class EvaluateMeshesOptions(StageOptions):
    pred: str | None
    scans: str | None
    model: str
    landmark_format: str
    pred_landmark_format: str
    units: str
    metrical: bool
    pred_units: str
    refine: bool


def _landmarks7(points, fmt, path):
    """The 7 NoW landmarks from (K, 3) points in a ``--landmark-format`` order (InputError if missing)."""
    from face3d_data.registration.landmarks import NOW7_IBUG, ibug_indices

    if fmt == "auto" and len(points) == 7:
        fmt = "now7"
    try:
        ibug = ibug_indices(fmt, len(points))
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    pos = {int(k): i for i, k in enumerate(ibug) if k >= 0}
    missing = [int(k) for k in NOW7_IBUG if int(k) not in pos]
    if missing:
        raise InputError(path, f"landmarks lack iBUG points {missing} needed for the NoW crop")
    return points[[pos[int(k)] for k in NOW7_IBUG]], ibug


def _find_predictions(folder: str) -> dict:
    out = {}
    for path in find_scans(folder):
        if not path.lower().endswith(".png"):
            out[scan_stem(path)] = path
    for name in sorted(os.listdir(folder)):
        reg = os.path.join(folder, name, "registered.ply")
        if os.path.isfile(reg) and name not in out:
            out[name] = reg
    return out


class EvaluateMeshesStage(Stage):
    name = "evaluate_meshes"
    summary = "NoW-style scan-to-mesh error (median / mean / std in mm) of predicted meshes against scans."
    Options = EvaluateMeshesOptions
    input_options = ("pred", "scans")
    asset_options = ("model",)

    def check_config(self, cfg):
        for key in ("pred", "scans"):
            value = getattr(cfg, key)
            if not value:
                raise ConfigError(f"--{key} is required (a folder)")
            if not os.path.isdir(value):
                raise ConfigError(f"{key}: {value!r} is not a folder")
        if cfg.units not in ("auto", "m", "cm", "mm", "um"):
            raise ConfigError(f"units: expected auto, m, cm, mm or um, got {cfg.units!r}")
        if cfg.pred_units not in ("m", "cm", "mm", "um"):
            raise ConfigError(f"pred_units: expected m, cm, mm or um, got {cfg.pred_units!r}")
        from face3d_data.registration.landmarks import read_mapping

        for key in ("landmark_format", "pred_landmark_format"):
            if getattr(cfg, key) not in _FORMATS:
                read_mapping(getattr(cfg, key))

    def setup(self, cfg):
        from face3d_data.morphable.require import require_model

        return require_model(cfg.model, purpose="landmark vertices of the predictions")

    def list_items(self, cfg, ctx):
        scans = {scan_stem(p): p for p in find_scans(cfg.scans) if not p.lower().endswith(".png")}
        items = []
        for stem, pred in sorted(_find_predictions(cfg.pred).items()):
            if stem not in scans:
                continue
            inputs = {"pred": pred, "scan": scans[stem]}
            for role, path in (("scan_landmarks", find_scan_landmarks(scans[stem])),
                               ("pred_landmarks", find_scan_landmarks(pred) if not pred.endswith("registered.ply")
                                else None)):
                if path:
                    inputs[role] = path
            items.append(Item(key=stem, inputs=inputs))
        if not items:
            raise ConfigError(f"no prediction in {cfg.pred!r} has a scan of the same stem in {cfg.scans!r}")
        return items

    def process(self, item, cfg, ctx):
        from face3d_data.registration.landmarks import UNIT_MM, detect_unit
        from face3d_data.registration.now import now_error

        model = ctx.resources
        scan = read_scan(item.inputs["scan"])
        if "scan_landmarks" not in item.inputs:
            raise InputError(item.inputs["scan"], "no landmark file beside the scan")
        lm_path = item.inputs["scan_landmarks"]
        scan_lm = read_scan_landmarks(lm_path)
        scan_lm7, ibug = _landmarks7(scan_lm, cfg.landmark_format, lm_path)
        unit = cfg.units
        if unit == "auto":
            try:
                unit = detect_unit({int(k): p for k, p in zip(ibug, scan_lm) if k >= 0})[0]
            except ValueError as exc:
                raise InputError(lm_path, str(exc)) from None
        f = UNIT_MM[unit]
        pred = read_scan(item.inputs["pred"])
        if "pred_landmarks" in item.inputs:
            pl = read_scan_landmarks(item.inputs["pred_landmarks"])
            pred_lm7, _ = _landmarks7(pl, cfg.pred_landmark_format, item.inputs["pred_landmarks"])
        elif len(pred.vertices) == model.n_vertices:
            from face3d_data.registration.landmarks import NOW7_IBUG

            pred_lm7 = pred.vertices[model.landmarks[NOW7_IBUG]]
        else:
            raise InputError(item.inputs["pred"], f"no landmark file beside the prediction and {len(pred.vertices)} "
                                                  f"vertices, not the model's {model.n_vertices}")
        pf = UNIT_MM[cfg.pred_units] if cfg.metrical else 1.0
        try:
            err = now_error(pred.vertices * pf, pred.triangles, pred_lm7 * pf, scan.vertices * f, scan_lm7 * f,
                            metrical=cfg.metrical, refine=cfg.refine)
        except ValueError as exc:
            raise InputError(item.inputs["scan"], str(exc)) from None
        save_npy(ctx.path(item.key, "distances.npy"), err.distances.astype(np.float32))
        summary = err.summary()
        summary.update({"scan_unit": unit, "metrical": cfg.metrical})
        write_text(ctx.path(item.key, "error.json"), json.dumps(summary, indent=1) + "\n")
        return {"outputs": [f"{item.key}/distances.npy", f"{item.key}/error.json"],
                "median_mm": summary["median_mm"], "mean_mm": summary["mean_mm"], "std_mm": summary["std_mm"],
                "n_points": summary["n_points"]}

    def finish(self, cfg, ctx, records):
        records = sorted(records, key=lambda r: r["key"])
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["scan", "median_mm", "mean_mm", "std_mm", "n_points"])
        for r in records:
            w.writerow([r["key"], f"{r['median_mm']:.6g}", f"{r['mean_mm']:.6g}", f"{r['std_mm']:.6g}", r["n_points"]])
        write_text(ctx.path("errors.csv"), out.getvalue())
        dist = (np.concatenate([load_npy(ctx.path(r["key"], "distances.npy")) for r in records])
                if records else np.zeros(0, np.float32)).astype(np.float64)
        thresholds = np.round(np.arange(0, 10.0001, 0.1), 3)
        cum = io.StringIO()
        cum.write("threshold_mm,fraction\n")
        for t in thresholds:
            cum.write(f"{t:.1f},{(np.mean(dist <= t) if len(dist) else 0.0):.6f}\n")
        write_text(ctx.path("cumulative.csv"), cum.getvalue())
        summary = {"scans": len(records), "points": len(dist),
                   "median_mm": float(np.median(dist)) if len(dist) else None,
                   "mean_mm": float(np.mean(dist)) if len(dist) else None,
                   "std_mm": float(np.std(dist)) if len(dist) else None,
                   "metrical": cfg.metrical,
                   "protocol": "NoW-style: nose crop, 7-landmark similarity (no reflection), rigid+scale "
                               "refinement (Gauss-Newton), scan-to-mesh point-to-surface distances"}
        write_text(ctx.path("summary.json"), json.dumps(summary, indent=2) + "\n")
