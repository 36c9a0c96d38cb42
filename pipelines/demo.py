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
    # one multi-view group (3 views of one identity, expression and texture; multiview_<split>.txt)
    # and its parsing maps, DF-MVR style (docs/multiview.md)
    ("synth_300wlp", "multiview", {"count": 1, "views": 3}),
    ("parsing", "multiview_parsing", {"data_root": "{multiview}"}),
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
    train_code = run_demo_training(out, folders["synth"], jobs=jobs, seed=seed, quiet=quiet)
    if not quiet:
        print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; wrote {out}:")
        for s in rows:
            extras = [os.path.relpath(p, out) for p in (s.preview, s.manifest, s.failures) if p]
            print(f"  {os.path.relpath(s.out_dir, out):<14} {', '.join(extras)}")
        print(f"  {'train':<14} " + ", ".join(DEMO_TRAIN_OUTPUTS))
    if train_code in (2, 4):
        return train_code
    return 3 if train_code or any(s.failed for s in rows) else 0


#: The demo's last step: a short CPU PRNet run (``python -m pipelines.train``) on 64² posmaps of the
#: demo's synthetic faces, then ``eval`` on the held-out test list and ``predict`` on its crops.
DEMO_TRAIN = {"resolution": 64, "width": 4, "batch_size": 4, "max_steps": 12,
              "splits": {"train": 0.75, "val": 0.125, "test": 0.125}}
#: What the training step writes under ``DIR/train`` (listed at the end of the demo).
DEMO_TRAIN_OUTPUTS = ("posmap64/datalist/posmap_{train,val,test}.txt", "prnet/checkpoints/{last,best}.pt",
                      "prnet/metrics.jsonl", "prnet/previews/", "eval/metrics.json", "eval/worst_cases.jpg",
                      "predict/{<stem>.npy,<stem>.obj,landmarks/<stem>.txt,contact_sheet.jpg}")


def run_demo_training(out: str, synth: str, jobs: int = 0, seed: int = 0, quiet: bool = False) -> int:
    """Train, evaluate and run a small PRNet on the CPU from the synthetic faces in ``synth``.

    Writes ``out/train/posmap64`` (the posmap stage at R = 64 with a test split), ``out/train/prnet``
    (a width-4 ResFCN trained for ``DEMO_TRAIN["max_steps"]`` steps: checkpoints, metrics.jsonl,
    a preview), ``out/train/eval`` (``eval prnet`` on the test list: metrics.json with nme_2d /
    nme_3d, worst_cases.jpg) and ``out/train/predict`` (``predict prnet`` on copies of the test
    crops). Returns the worst exit status of the three commands (0 done, 3 samples dropped, 2/4 errors).
    """
    import torch

    from pipelines.train import main as train_main

    started = time.perf_counter()
    base = os.path.join(out, "train")
    pos = os.path.join(base, "posmap64")
    cfg = build_config("posmap", explicit={"data_root": synth, "resolution": DEMO_TRAIN["resolution"],
                                           "splits": DEMO_TRAIN["splits"], "posmap_png_every": 0})
    summary = run_stage(stage_class("posmap"), RunOptions(out=pos, jobs=jobs, quiet=True, seed=seed), cfg=cfg)
    lists = {split: os.path.join(pos, "datalist", f"posmap_{split}.txt") for split in ("train", "val", "test")}
    codes = [3 if summary.failed else 0]
    # A width-4 net at 64² is many tiny ops: extra threads only add synchronisation (4x slower with
    # 2 threads than with 1 on a busy 2-core machine), so the demo trains on one.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        codes += _train_eval_predict(train_main, lists, pos, base, synth, seed)
    finally:
        torch.set_num_threads(threads)
    if not quiet:
        import json

        nme = None
        metrics = os.path.join(base, "eval", "metrics.json")
        if os.path.exists(metrics):
            with open(metrics, encoding="utf-8") as f:
                nme = json.load(f).get("nme_2d")
        print(f"[demo] {'train prnet':<16} {DEMO_TRAIN['max_steps']:>4} steps, test NME "
              f"{'n/a' if nme is None else f'{100 * nme:.1f} %'} (sqrt(w*h) of the 68-point box), "
              f"{time.perf_counter() - started:6.1f} s  -> {base}", flush=True)
    bad = [c for c in codes if c in (2, 4)]
    return bad[0] if bad else max(codes)


def _train_eval_predict(train_main, lists: dict, pos: str, base: str, synth: str, seed: int) -> list[int]:
    """The three ``python -m pipelines.train`` commands of :func:`run_demo_training`; their exit codes."""
    import contextlib
    import io
    import shutil

    from face3d_data.io import read_datalist

    run, ckpt = os.path.join(base, "prnet"), os.path.join(base, "prnet", "checkpoints", "last.pt")
    steps = DEMO_TRAIN["max_steps"]
    codes = [train_main(["prnet", "--datalist", lists["train"], "--val-datalist", lists["val"], "--out", run,
                         "--max-steps", str(steps), "--batch-size", str(DEMO_TRAIN["batch_size"]),
                         "--set", f"width={DEMO_TRAIN['width']}", "--device", "cpu", "--workers", "0",
                         "--seed", str(seed), "--log-every", "2", "--preview-every", str(steps),
                         "--resume", "never", "--quiet"])]
    with contextlib.redirect_stdout(io.StringIO()):  # eval prints its metrics as one JSON line
        codes.append(train_main(["eval", "prnet", "--checkpoint", ckpt, "--datalist", lists["test"],
                                 "--out", os.path.join(base, "eval"), "--set", f"yaw_root={synth}"]))
    crops = os.path.join(base, "predict_input")
    os.makedirs(crops, exist_ok=True)
    for image, _label in read_datalist(lists["test"], pos, columns=2):
        shutil.copyfile(image, os.path.join(crops, os.path.basename(image)))
    with contextlib.redirect_stderr(io.StringIO()):  # predict reports its image count on stderr
        codes.append(train_main(["predict", "prnet", "--checkpoint", ckpt, "--img_folder", crops,
                                 "--out", os.path.join(base, "predict")]))
    return codes


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
