"""Benchmark of face profiling (``profile_300wlp``) on synthetic 450×450 sources.

    python benchmarks/profiling.py [--sources 12] [--jobs 2] [--yaw-step 5]

1. Generates ``--sources`` synthetic 300W-LP samples (embedded model, |yaw| <= 30°, 450²) with
   :func:`face3d_data.w300lp.synth.synthesize` (not timed).
2. Where time goes, one process: decode (JPEG + .mat), meshing (once per source: visibility,
   silhouette, rings, Delaunay, anchor depths), and per view: rasterise (anchor solve + z-buffer
   of the image mesh), remap (fill + ``cv2.remap``), labels (landmarks, marching, quality
   record), write (JPEG + .mat + _pts.mat + mask PNG).
3. End to end: the stage through the runner with ``--jobs`` loky workers; views/s counts every
   written view (view 0 included, as the stage writes it).

``--picture PATH`` instead writes the yaw-sweep figure of docs/profiling.md (a synthetic source
and scikit-image's public-domain astronaut photo fitted with the embedded model, yaw in 15° steps,
with the no-source/stretch masks).

The machine's load average is printed with the figures: on a shared machine they vary from run
to run, so compare ratios within one run rather than absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import print_machine

from face3d_data.augment.profile import Profiler, sweep_yaws, target_angles
from face3d_data.augment.profile_labels import label_fields
from face3d_data.io import read_image, read_mat, write_image
from face3d_data.morphable import load_model
from face3d_data.w300lp import write_labels, write_pts_mat
from face3d_data.w300lp.synth import PoseDistribution, synthesize

SIZE = 450


def make_sources(root: str, model, n: int, seed: int = 0) -> list[tuple[str, str]]:
    os.makedirs(root, exist_ok=True)
    pairs = []
    for i in range(n):
        s = synthesize(model, np.random.default_rng([seed, i]), SIZE,
                       pose=PoseDistribution(yaw_range_deg=30.0))
        stem = os.path.join(root, f"bench_{i:04d}")
        write_image(stem + ".jpg", s.image)
        write_labels(stem + ".mat", s.labels)
        pairs.append((stem + ".jpg", stem + ".mat"))
    return pairs


def phases(pairs, model, out: str, yaw_step: float) -> tuple[dict, int]:
    t = dict.fromkeys(("decode", "meshing", "rasterise", "remap", "labels", "write"), 0.0)
    profiler = Profiler(model)
    views = 0
    for i, (jpg, mat) in enumerate(pairs):
        c0 = time.perf_counter()
        image, fields = read_image(jpg), read_mat(mat)
        c1 = time.perf_counter()
        pose = np.asarray(fields["Pose_Para"], np.float64).ravel()
        source = profiler.prepare(image, pose, fields["Shape_Para"], fields["Exp_Para"])
        c2 = time.perf_counter()
        t["decode"] += c1 - c0
        t["meshing"] += c2 - c1
        angles = [source.pose_para[:3]] + list(target_angles(
            pose, sweep_yaws(math.degrees(pose[1]), yaw_step, 90.0)))
        for k, ang in enumerate(angles):
            view = profiler.view(source, ang)
            for key in ("rasterise", "remap", "labels"):
                t[key] += view.seconds[key]
            c0 = time.perf_counter()
            stem = os.path.join(out, f"{i}_{k}")
            write_image(stem + ".jpg", view.image, quality=95)
            write_labels(stem + ".mat", label_fields(fields, view.pose_para, view.landmarks))
            write_pts_mat(stem + "_pts.mat", view.landmarks.pt2d, view.landmarks.pt3d[:, :2])
            write_image(stem + "_mask.png", view.mask)
            t["write"] += time.perf_counter() - c0
            views += 1
    return t, views


def end_to_end(root: str, out: str, jobs: int, yaw_step: float):
    from pipelines.core import RunOptions, build_config, run_stage
    from pipelines.registry import stage_class

    cfg = build_config("profile_300wlp", explicit={"data_root": root, "yaw_step": yaw_step,
                                                   "write_sheets": False})
    start = time.perf_counter()
    summary = run_stage(stage_class("profile_300wlp"), RunOptions(out=out, jobs=jobs, quiet=True),
                        cfg=cfg)
    seconds = time.perf_counter() - start
    views = sum(1 for r in summary.records if r.get("status") == "ok"
                for p in r.get("outputs", []) if p.endswith(".jpg") and not p.startswith("sheets/"))
    return seconds, views, summary.failed


def sweep_picture(path: str, model) -> None:
    """The docs figure: rows = synthetic sweep, its masks, the fitted photo's sweep (face crops)."""
    import cv2
    from skimage import data

    from face3d_data.fitting import fit_landmarks
    from face3d_data.landmarks import detect_landmarks68
    from face3d_data.viz import contact_sheet, draw_landmarks

    profiler = Profiler(model)
    rows = []
    s = synthesize(model, np.random.default_rng(5), SIZE, pose=PoseDistribution(yaw_range_deg=25.0))
    pose = s.labels["Pose_Para"].ravel().astype(np.float64)
    src = profiler.prepare(s.image, pose, s.labels["Shape_Para"], s.labels["Exp_Para"])
    yaws = [math.degrees(pose[1])] + sweep_yaws(math.degrees(pose[1]), 15.0, 90.0)
    views = [profiler.view(src, (pose[0], math.radians(y), pose[2])) for y in yaws]
    rows.append([draw_landmarks(v.image, v.landmarks.pt2d, radius=2) for v in views])
    rows.append([cv2.cvtColor(v.mask, cv2.COLOR_GRAY2RGB) for v in views])
    photo = np.ascontiguousarray(data.astronaut())
    lm = detect_landmarks68(photo)
    fit = fit_landmarks(lm, model, photo.shape[:2])
    pose = np.asarray(fit.pose_para, np.float64).ravel()
    src = profiler.prepare(photo, pose, fit.shape_para, fit.exp_para)
    yaws = [math.degrees(pose[1])] + sweep_yaws(math.degrees(pose[1]), 15.0, 90.0)
    views = [profiler.view(src, (pose[0], math.radians(y), pose[2])) for y in yaws]
    c = views[0].landmarks.pt3d[:, :2].mean(0)
    half = int(1.1 * np.ptp(views[0].landmarks.pt3d[:, :2], axis=0).max())
    x0, y0 = (np.round(c) - half).astype(int)
    crop = [v.image[max(y0, 0):y0 + 2 * half, max(x0, 0):x0 + 2 * half] for v in views]
    rows.append(crop)
    n = max(len(r) for r in rows)
    tiles = [t for r in rows for t in r + [np.zeros((8, 8, 3), np.uint8)] * (n - len(r))]
    write_image(path, contact_sheet(tiles, ncols=n, tile_size=150))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=12)
    parser.add_argument("--phase-sources", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--yaw-step", type=float, default=5.0)
    parser.add_argument("--picture", help="write the docs yaw-sweep figure to this PNG and exit")
    args = parser.parse_args(argv)
    model = load_model("builtin")
    if args.picture:
        sweep_picture(args.picture, model)
        return 0
    print_machine()
    print("(shared machine: figures vary with the load)")
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "src")
        pairs = make_sources(root, model, args.sources)
        os.makedirs(os.path.join(tmp, "phases"))
        n = min(args.phase_sources, len(pairs))
        t, views = phases(pairs[:n], model, os.path.join(tmp, "phases"), args.yaw_step)
        total = sum(t.values())
        print(f"where time goes (1 process, {n} sources, {views} views at {SIZE}²): "
              f"{views / total:.2f} views/s, {1e3 * total / views:.1f} ms/view")
        for k, v in t.items():
            print(f"  {k:10s} {1e3 * v / views:7.2f} ms/view  {100 * v / total:5.1f} %")
        seconds, views, failed = end_to_end(root, os.path.join(tmp, "out"), args.jobs, args.yaw_step)
        print(f"end to end (runner, {args.jobs} loky jobs, {args.sources} sources, {views} views, "
              f"{failed} failed): {views / seconds:.2f} views/s ({seconds:.1f} s, incl. worker start-up "
              f"and model load); load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
