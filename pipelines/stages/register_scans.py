"""Stage ``register_scans``: 3D scans onto the model topology, with a quality record per scan.

One item per scan in ``--scans`` (``<stem>.obj|.ply`` or an RGB-D ``<stem>_depth.png``), its
landmarks beside it (``<stem>_landmarks.npy|.ljson|.txt``). The registration itself is
:func:`face3d_data.registration.register_scan`. Per scan, under ``OUT/<stem>/``:

- ``registered.ply``: the model's triangles (outward winding) on the registered vertices in the
  scan's frame and unit (overlays the scan), with colours sampled from the scan;
- ``registered.npz``: ``vertices_scan`` (N, 3) scan frame/unit, ``vertices_model`` (N, 3) model
  frame/unit, ``valid`` (N,) bool, ``distance_mm``, ``confidence``, ``weight`` (N,) float32,
  ``classes`` (N,) uint8 (0 rest, 1 cheeks, 2 features), ``colors`` (N, 3) float32 (if any),
  ``triangles``, ``shape_para``, ``exp_para``, ``sim_s``, ``sim_R``, ``sim_t`` (model -> scan mm);
- ``qa.json``: the QA record (:mod:`face3d_data.registration.qa`) with ``status``, ``subject``, ``split``.

A scan that fails QA is written and listed (``failed_qa.txt``), never dropped. ``finish`` writes
``index.csv`` (one row per scan), ``train.txt`` / ``test.txt`` (``<stem>/registered.npz`` of the
scans that passed, split by subject) and ``summary.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.io import write_datalist, write_mesh, write_text
from face3d_data.io.atomic import write_bytes
from face3d_data.io.scan import (
    find_scan_landmarks,
    find_scans,
    read_scan,
    read_scan_landmarks,
    scan_stem,
)
from face3d_data.posmap.splits import split_of
from pipelines.core import Item, Stage, StageOptions


@dataclasses.dataclass(frozen=True)
class RegisterScansOptions(StageOptions):
    scans: str | None
    model: str
    landmark_format: str
    units: str
    subject_regex: str | None
    test_fraction: float
    split_salt: str
    fit_model: bool
    fit_iterations: int
    fit_prior: float
    stiffness: list[float]
    landmark_weights: list[float]
    distance_caps: list[float]
    max_inner: int
    min_normal_cos: float
    valid_distance_mm: float
    active_ring: int
    use_jaw_landmarks: bool
    solver: str
    closest: str
    max_inner_landmark_mm: float
    min_features_valid: float
    max_features_flipped: float
    max_now_median_mm: float


def subject_of(stem: str, regex: str | None) -> str:
    """Subject id of a scan stem: the first group (or whole match) of ``regex``, else the stem."""
    if not regex:
        return stem
    m = re.search(regex, stem)
    if not m:
        return stem
    return m.group(1) if m.groups() else m.group(0)


def registration_options(cfg):
    from face3d_data.registration import RegistrationOptions
    from face3d_data.registration.nicp import NICPSchedule
    from face3d_data.registration.qa import Thresholds

    return RegistrationOptions(
        fit_model=cfg.fit_model, fit_iterations=cfg.fit_iterations, fit_prior=cfg.fit_prior,
        schedule=NICPSchedule(alphas=tuple(cfg.stiffness), betas=tuple(cfg.landmark_weights),
                              caps=tuple(cfg.distance_caps), max_inner=cfg.max_inner,
                              min_cos=cfg.min_normal_cos),
        solver=cfg.solver, closest=cfg.closest, use_jaw_landmarks=cfg.use_jaw_landmarks,
        active_ring=cfg.active_ring,
        valid_distance_mm=cfg.valid_distance_mm,
        thresholds=Thresholds(cfg.max_inner_landmark_mm, cfg.min_features_valid, cfg.max_features_flipped,
                              cfg.max_now_median_mm))


class RegisterScansStage(Stage):
    name = "register_scans"
    summary = "Register 3D scans onto the model topology (landmarks, 3DMM fit, NICP) with a QA record per scan."
    Options = RegisterScansOptions
    input_options = ("scans",)
    asset_options = ("model",)
    preview_count = 12

    def check_config(self, cfg):
        if not cfg.scans:
            raise ConfigError("--scans is required (a folder of .obj/.ply scans or RGB-D frames)")
        if not os.path.isdir(cfg.scans):
            raise ConfigError(f"scans: {cfg.scans!r} is not a folder")
        if cfg.units not in ("auto", "m", "cm", "mm", "um"):
            raise ConfigError(f"units: expected auto, m, cm, mm or um, got {cfg.units!r}")
        if cfg.landmark_format not in ("auto", "ibug68", "ibug51", "now7"):
            from face3d_data.registration.landmarks import read_mapping

            read_mapping(cfg.landmark_format)  # ConfigError when not a readable mapping file
        n = len(cfg.stiffness)
        if n == 0 or len(cfg.landmark_weights) != n or len(cfg.distance_caps) != n:
            raise ConfigError("stiffness, landmark_weights and distance_caps need the same non-zero length")
        if any(a <= 0 for a in cfg.stiffness) or any(c <= 0 for c in cfg.distance_caps):
            raise ConfigError("stiffness and distance_caps: expected positive values")
        if not 0 <= cfg.test_fraction <= 1:
            raise ConfigError(f"test_fraction: expected 0..1, got {cfg.test_fraction}")
        if cfg.max_inner < 1 or cfg.fit_iterations < 1:
            raise ConfigError("max_inner and fit_iterations: expected at least 1")
        if cfg.subject_regex:
            try:
                re.compile(cfg.subject_regex)
            except re.error as exc:
                raise ConfigError(f"subject_regex: {exc}") from None
        from face3d_data.registration.solvers import resolve_backend

        try:
            resolve_backend(cfg.solver)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if cfg.closest not in ("auto", "igl", "kdtree"):
            raise ConfigError(f"closest: expected auto, igl or kdtree, got {cfg.closest!r}")

    def setup(self, cfg):
        from face3d_data.morphable.require import require_model
        from face3d_data.registration import Template

        model = require_model(cfg.model, needs=("triangles",), purpose="scan registration")
        return Template.from_model(model)

    def list_items(self, cfg, ctx):
        items = []
        for path in find_scans(cfg.scans):
            inputs = {"scan": path}
            lm = find_scan_landmarks(path)
            if lm:
                inputs["landmarks"] = lm
            if path.lower().endswith(".obj"):
                mtl = os.path.splitext(path)[0] + ".mtl"
                if os.path.isfile(mtl):
                    inputs["mtl"] = mtl
            if path.lower().endswith("_depth.png"):
                from face3d_data.io.scan import rgbd_paths

                extra = rgbd_paths(path)
                inputs["intrinsics"] = extra["intrinsics"]
                if extra["color"]:
                    inputs["color"] = extra["color"]
            items.append(Item(key=scan_stem(path), inputs=inputs))
        keys = [it.key for it in items]
        if len(set(keys)) != len(keys):
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise ConfigError(f"scans: several scans share a stem: {', '.join(dup[:5])}")
        return items

    def process(self, item, cfg, ctx):
        from face3d_data.registration import register_scan
        from face3d_data.registration.landmarks import ibug_indices

        template = ctx.resources
        path = item.inputs["scan"]
        if "landmarks" not in item.inputs:
            raise InputError(path, "no landmark file beside the scan (<stem>_landmarks.npy|.ljson|.txt)")
        scan = read_scan(path)
        lm_path = item.inputs["landmarks"]
        points = read_scan_landmarks(lm_path)
        try:
            ibug = ibug_indices(cfg.landmark_format, len(points))
        except ValueError as exc:
            raise InputError(lm_path, str(exc)) from None
        unit = cfg.units if cfg.units != "auto" or scan.unit is None else scan.unit
        try:
            reg = register_scan(template, scan.vertices, scan.triangles, points, ibug, unit=unit,
                                scan_colors=scan.colors, scan_uv=scan.uv, texture=scan.texture,
                                options=registration_options(cfg))
        except ValueError as exc:
            raise InputError(lm_path, str(exc)) from None
        stem = item.key
        subject = subject_of(stem, cfg.subject_regex)
        split = split_of(subject, {"train": 1.0 - cfg.test_fraction, "test": cfg.test_fraction}, cfg.split_salt)
        colors = None if reg.colors is None else np.clip(reg.colors, 0, 1)
        write_mesh(ctx.path(stem, "registered.ply"), reg.vertices_scan, template.triangles, colors=colors)
        arrays = {"vertices_scan": reg.vertices_scan, "vertices_model": reg.vertices_model,
                  "valid": reg.valid, "distance_mm": reg.distance_mm, "confidence": reg.confidence,
                  "weight": reg.weight, "classes": reg.classes, "triangles": template.triangles,
                  "shape_para": reg.shape_para.astype(np.float32), "exp_para": reg.exp_para.astype(np.float32),
                  "sim_s": np.float64(reg.similarity["s"]), "sim_R": reg.similarity["R"],
                  "sim_t": reg.similarity["t"]}
        if colors is not None:
            arrays["colors"] = colors.astype(np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes(ctx.path(stem, "registered.npz"), buf.getvalue())
        qa = dict(reg.qa)
        timing = qa.pop("timing_s")   # run timings go to the manifest: qa.json stays reproducible
        qa.update({"scan": os.path.basename(path), "subject": subject, "split": split,
                   "model": template.model.name})
        write_text(ctx.path(stem, "qa.json"), json.dumps(qa, indent=1, default=_json_default, allow_nan=True) + "\n")
        return {"outputs": [f"{stem}/registered.ply", f"{stem}/registered.npz", f"{stem}/qa.json"],
                "status": reg.status, "subject": subject, "split": split,
                "inner_landmark_mm": qa["landmarks"]["registered"]["inner"],
                "now_median_mm": qa["now_crop"]["median_mm"],
                "features_valid": qa["valid_fraction"]["features"],
                "seconds": timing["total"]}

    def finish(self, cfg, ctx, records):
        records = sorted(records, key=lambda r: r["key"])
        cols = ["key", "subject", "split", "status", "inner_landmark_mm", "now_median_mm", "features_valid"]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["scan" if c == "key" else c for c in cols])
        for r in records:
            w.writerow([r.get(c, "") if not isinstance(r.get(c), float) else f"{r[c]:.6g}" for c in cols])
        write_text(ctx.path("index.csv"), out.getvalue())
        failed = [r["key"] for r in records if r.get("status") != "ok"]
        write_text(ctx.path("failed_qa.txt"), "".join(k + "\n" for k in failed))
        counts = {}
        for split in ("train", "test"):
            rows = [(ctx.path(r["key"], "registered.npz"),) for r in records
                    if r.get("split") == split and r.get("status") == "ok"]
            counts[split] = write_datalist(ctx.path(f"{split}.txt"), rows, ctx.out_dir)
        summary = {"scans": len(records), "ok": len(records) - len(failed), "failed_qa": len(failed),
                   "splits": counts}
        write_text(ctx.path("summary.json"), json.dumps(summary, indent=2) + "\n")

    def preview(self, record, cfg, ctx):
        from face3d_data.registration.views import distance_picture

        data = np.load(ctx.path(record["key"], "registered.npz"))
        return distance_picture(data["vertices_model"], data["triangles"], data["distance_mm"], data["valid"],
                                size=192, label=f"{record['key']} {record.get('status', '')}")


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
