"""Benchmark: parsing maps against PNCC maps of the same model and samples, in the same run.

Not a test (timings on a shared machine are noisy). Synthesises ``--samples`` 450×450 samples
of the embedded model, then measures

1. per map, in memory, single thread: part classes + z-buffered label map (``parsing``)
   against :func:`face3d_data.render.render_pncc` (``pncc``), interleaved rounds, best of each;
2. maps/s on ``--jobs`` threads over all samples (both kernels release the GIL in the z-buffer);
3. end to end through the runner with ``--jobs`` workers: the ``parsing`` stage against the
   ``pncc`` stage on the same folder (image decode, labels, PNG encode included).

Each line reports the ratio parsing / pncc (time) or pncc / parsing (throughput): ~1 means the
same cost.

    python benchmarks/parsing.py [--samples 32] [--jobs 2] [--repeats 5] [--size 450]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from _machine import print_machine

from face3d_data.io import write_image
from face3d_data.morphable import load_model
from face3d_data.parsing import PartLabeller, label_map, soft_label_map
from face3d_data.render import ncc_code, render_pncc
from face3d_data.w300lp import project, write_labels
from face3d_data.w300lp.synth import synthesize


def make_dataset(folder: str, model, count: int, size: int, seed: int = 0) -> list:
    """Write ``count`` synthetic samples; return their (model vertices, projected) pairs."""
    rng = np.random.default_rng(seed)
    faces = []
    for i in range(count):
        s = synthesize(model, rng, size, yaw_range_deg=60.0, antialias=1)
        name = os.path.join(folder, f"synth_{i:04d}")
        write_image(name + ".jpg", s.image)
        write_labels(name + ".mat", s.labels)
        v = model.vertices(s.labels["Shape_Para"], s.labels["Exp_Para"])
        faces.append((v, project(v, s.labels["Pose_Para"], (size, size))))
    return faces


def interleaved_best(fns: dict, repeats: int) -> dict:
    """{label: best seconds over ``repeats`` rounds}; each round runs every callable once, in turn."""
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for label, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[label] = min(best[label], time.perf_counter() - t)
    return best


def run_stage_rate(stage: str, data_root: str, out: str, jobs: int) -> float:
    from pipelines.core import RunOptions, build_config, run_stage
    from pipelines.registry import stage_class

    cfg = build_config(stage, explicit={"data_root": data_root})
    t = time.perf_counter()
    summary = run_stage(stage_class(stage), RunOptions(out=out, jobs=jobs, quiet=True), cfg=cfg)
    elapsed = time.perf_counter() - t
    if summary.failed:
        raise SystemExit(f"{stage}: {summary.failed} item(s) failed")
    return summary.processed / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=450)
    parser.add_argument("--no-stages", action="store_true", help="skip the end-to-end runner comparison")
    args = parser.parse_args(argv)
    print_machine()

    model = load_model("builtin")
    labeller = PartLabeller(model, "model")
    code = ncc_code(model.mean)
    tri, size = model.triangles, args.size

    def parsing(face):
        return label_map(face[1], tri, labeller.corner_classes(face[0]), size, size)

    def pncc(face):
        return render_pncc(face[1], tri, code, size, size)

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        faces = make_dataset(data, model, args.samples, size)
        print(f"{args.samples} samples of {model.name!r} ({model.n_vertices} vertices, {len(tri)} triangles) "
              f"at {size}²")

        per_map = interleaved_best({
            "parsing": lambda: [parsing(f) for f in faces],
            "pncc": lambda: [pncc(f) for f in faces],
            "parsing soft ×4": lambda: [soft_label_map(f[1], tri, labeller.corner_classes(f[0]), size, size, 4)
                                        for f in faces[:4]],
        }, args.repeats)
        p_ms = per_map["parsing"] / len(faces) * 1e3
        n_ms = per_map["pncc"] / len(faces) * 1e3
        s_ms = per_map["parsing soft ×4"] / min(4, len(faces)) * 1e3
        print(f"1 thread, per map: parsing {p_ms:.2f} ms, pncc {n_ms:.2f} ms -> ratio {p_ms / n_ms:.2f}; "
              f"soft (4×4 samples) {s_ms:.1f} ms")

        with ThreadPoolExecutor(args.jobs) as pool:
            threaded = interleaved_best({
                "parsing": lambda: list(pool.map(parsing, faces)),
                "pncc": lambda: list(pool.map(pncc, faces)),
            }, args.repeats)
        p_rate, n_rate = len(faces) / threaded["parsing"], len(faces) / threaded["pncc"]
        print(f"{args.jobs} threads: parsing {p_rate:.0f} maps/s, pncc {n_rate:.0f} maps/s -> "
              f"pncc/parsing throughput ratio {n_rate / p_rate:.2f}")

        if not args.no_stages:
            rates = {"parsing": 0.0, "pncc": 0.0}
            for r in range(args.repeats):  # interleaved fresh runs; the best rate of each stage
                for stage in ("parsing", "pncc"):
                    out = os.path.join(tmp, f"{stage}_{r}")
                    rates[stage] = max(rates[stage], run_stage_rate(stage, data, out, args.jobs))
            print(f"end to end ({args.jobs} workers, loky): parsing stage {rates['parsing']:.1f} maps/s, "
                  f"pncc stage {rates['pncc']:.1f} maps/s -> ratio {rates['pncc'] / rates['parsing']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
