"""``python -m pipelines.run demo --out DIR``: every stage on a small synthetic dataset.

Runs the chain below with the embedded licence-free face model, each stage writing into its own
sub-folder of ``DIR``, then prints what was written. Needs no licensed data; takes a few minutes
on two cores. Each stage added to the project adds one step here. ``{name}`` in an option is
replaced by the output folder of the earlier step ``name``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pipelines.core import RunOptions, build_config, run_stage
from pipelines.registry import stage_class

# (stage, output sub-folder, options). The first group turns the embedded model into a
# 300W-LP-format dataset and everything PRNet / 3DDFA training needs; the second is the
# "own photos" path: landmarks and skin masks, then 3DMM labels, then rotation augmentation.
DEMO_STEPS: list[tuple[str, str, dict]] = [
    ("synth_300wlp", "synth", {"count": 24}),
    ("rotate_300wlp", "rotated", {"data_root": "{synth}", "angles": [30, -30], "model": "builtin"}),
    ("uv_assets", "uv_assets", {"resolution": 256}),
    ("posmap", "posmap", {"data_root": "{synth}"}),
    ("validate_posmap", "posmap_report", {"posmap_dir": "{posmap}"}),
    ("pncc", "pncc", {"data_root": "{synth}"}),
    ("depth", "depth", {"data_root": "{synth}"}),
    ("data_preparation", "photos", {}),
    ("fit_3dmm", "fitted", {"img_folder": "{photos}"}),
    ("rotate_300wlp", "fitted_rotated", {"data_root": "{fitted}", "angles": [20, -20],
                                         "model": "builtin"}),
    ("profile_300wlp", "profiled", {"data_root": "{synth}", "yaw_step": 30.0, "flip": True}),
    ("profile_300wlp", "fitted_profiled", {"data_root": "{fitted}", "yaw_step": 15.0}),
    ("parsing", "parsing", {"data_root": "{synth}"}),
    ("register_scans", "registered", {"scans": "{scans}"}),
    ("augment_views", "scan_views", {"registered": "{registered}", "yaws": "0:90:30",
                                     "pitches": "-30,0,15"}),
    ("evaluate_meshes", "scan_eval", {"pred": "{registered}", "scans": "{scans}"}),
]


def write_demo_photos(folder: str) -> None:
    """Public-domain photos for the "own photos" path: scikit-image's astronaut, mirrored and
    rescaled copies (never licensed data)."""
    import cv2
    from skimage import data

    from face3d_data.io import write_image

    photo = data.astronaut()
    variants = {"astronaut.jpg": photo, "astronaut_mirrored.jpg": photo[:, ::-1],
                "astronaut_small.png": cv2.resize(photo, (384, 384), interpolation=cv2.INTER_AREA)}
    for name, image in variants.items():
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            write_image(path, np.ascontiguousarray(image))


def _resolve(value, folders: dict[str, str]):
    if isinstance(value, str):
        return value.format(**folders)
    if isinstance(value, list):
        return [_resolve(v, folders) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, folders) for k, v in value.items()}
    return value


def run_demo(out: str, jobs: int = 0, quiet: bool = False, seed: int = 0) -> int:
    """Run the demo chain into ``out``; return 0, or 3 when some items failed."""
    out = os.path.abspath(out)
    folders: dict[str, str] = {}
    rows = []
    started = time.perf_counter()
    write_demo_photos(os.path.join(out, "photos"))
    from face3d_data.registration.synthetic import write_synthetic_scans

    folders["scans"] = os.path.join(out, "scans")
    write_synthetic_scans(folders["scans"], count=1)
    for stage_name, sub, options in DEMO_STEPS:
        folders[sub] = os.path.join(out, sub)
        cfg = build_config(stage_name, explicit=_resolve(options, folders))
        summary = run_stage(stage_class(stage_name), RunOptions(out=folders[sub], jobs=jobs,
                                                                 quiet=True, seed=seed), cfg=cfg)
        rows.append(summary)
        if not quiet:
            print(f"[demo] {stage_name:<16} {summary.processed + summary.skipped:>4} ok "
                  f"{summary.failed:>3} failed  {summary.seconds:6.1f} s  -> {summary.out_dir}",
                  flush=True)
    if not quiet:
        print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; wrote {out}:")
        for s in rows:
            extras = [os.path.relpath(p, out) for p in (s.preview, s.manifest, s.failures) if p]
            print(f"  {os.path.relpath(s.out_dir, out):<14} {', '.join(extras)}")
    return 3 if any(s.failed for s in rows) else 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run demo",
                                     description="Run every stage on a small synthetic dataset "
                                                 "made with the embedded face model.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--jobs", type=int, default=0, help="parallel workers (default: all cores)")
    parser.add_argument("--seed", type=int, default=0, help="global seed")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    return run_demo(args.out, args.jobs, args.quiet, args.seed)
