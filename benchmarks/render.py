"""Benchmark of the CPU rendering kernels (not a test: timings on a shared machine are noisy).

Times rasterize, render_attributes (3 float channels), PNCC and a 256x256 UV position map on two
face-like meshes of the sizes of the BFM no-neck (38,416 vertices / 76,050 triangles) and full
(53,361 / 105,800) topologies, at 120², 256² and 450², single-threaded, then batched throughput
on 1 thread and on every core. Every ms is the min of N rounds in which all the callables of a
case are timed in turn, so load from other processes hits them alike; every "x" ratio between two
callables is the median over the rounds of their ratio within a round. Printed ratios:

- call / kernel: the public call with fresh buffers and with ``out=`` buffers, against the Cython
  kernel alone (``face3d_data._raster.rasterize_into`` on converted inputs into preallocated
  buffers; it initialises them and checks indices itself), so the ratio is the wrapper's cost;
- against the numpy reference (:mod:`face3d_data.render.reference`) and, when
  FACE3D_RENDER_ANCHORS names a folder holding built face3d ``mesh_core_cython*.so`` and/or
  3DDFA_V2 ``Sim3DR_Cython*.so`` (built outside this repository), against each of them on the
  same meshes, for the kernel and for the public call (anchors skipped otherwise).

    python benchmarks/render.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time
from functools import partial

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from _machine import print_machine  # noqa: E402

from face3d_data import _raster  # noqa: E402
from face3d_data.render import (  # noqa: E402
    ncc_code,
    rasterize,
    rasterize_batch,
    render_attributes,
    render_attributes_batch,
    render_pncc,
    render_uv,
)
from face3d_data.render._checks import as_threads  # noqa: E402
from face3d_data.render.reference import reference_rasterize  # noqa: E402


def face_mesh(grid: int, size: int):
    """A face-like height field on a grid x grid lattice, projected to fill a size² crop.

    Returns model vertices (N, 3), image vertices (N, 3) float32 canonical frame, triangles
    (M, 3) int32, uv texel coordinates (N, 2) for a 256² UV map.
    """
    u, v = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid))
    z = np.sqrt(np.clip(1.4 - 0.9 * u ** 2 - 0.5 * v ** 2, 0, None)) \
        + 0.35 * np.exp(-(u ** 2 + (v + 0.05) ** 2) / 0.02)               # a nose
    model = np.stack([u, -v, z], -1).reshape(-1, 3)
    image = np.stack([(0.5 + 0.42 * u) * (size - 1), (0.52 + 0.45 * v) * (size - 1),
                      0.4 * size * z], -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(grid - 1)
    a = (i[:, None] * grid + i[None, :]).ravel()
    tris = np.concatenate([np.stack([a, a + grid + 1, a + 1], 1),
                           np.stack([a, a + grid, a + grid + 1], 1)]).astype(np.int32)
    tris = tris.reshape(2, -1, 3).transpose(1, 0, 2).reshape(-1, 3)        # neighbours adjacent
    uv = np.stack([(u.ravel() + 1) / 2 * 255, (v.ravel() + 1) / 2 * 255], -1).astype(np.float32)
    return model, image, tris, uv


class Timings:
    """Per-round times of several callables timed in turn (see :func:`interleaved`).

    ``ms(label)`` is the minimum over the rounds; ``ratio(a, b)`` the median over the rounds of
    a's time / b's time in the same round, so a slow phase of a shared machine (other processes,
    frequency changes) divides out instead of landing on one callable and not the other.
    """

    def __init__(self, times: dict):
        self.times = {label: np.asarray(t) for label, t in times.items()}

    def __contains__(self, label):
        return label in self.times

    def labels(self):
        return list(self.times)

    def ms(self, label) -> float:
        return float(self.times[label].min() * 1e3)

    def ratio(self, a, b) -> float:
        return float(np.median(self.times[a] / self.times[b]))


def interleaved(fns: dict, repeats: int) -> Timings:
    """Time every callable once per round, in turn (forward, then reversed order in alternate
    rounds), for ``repeats`` rounds after one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {label: [] for label in fns}
    items = list(fns.items())
    for r in range(repeats):
        for label, fn in (items if r % 2 == 0 else items[::-1]):
            t0 = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t0)
    return Timings(times)


def interleaved_best_ms(fns: dict, repeats: int) -> dict:
    """{label: min ms over ``repeats`` rounds of :func:`interleaved`}."""
    timed = interleaved(fns, repeats)
    return {label: timed.ms(label) for label in timed.labels()}


def best_ms(fn, repeats: int) -> float:
    return interleaved_best_ms({"fn": fn}, repeats)["fn"]


def load_anchors():
    folder = os.environ.get("FACE3D_RENDER_ANCHORS")
    found = {}
    if not folder:
        return found
    for key, pattern in (("face3d", "mesh_core_cython*.so"), ("sim3dr", "Sim3DR_Cython*.so")):
        paths = glob.glob(os.path.join(folder, "**", pattern), recursive=True)
        if paths:
            name = os.path.basename(paths[0]).split(".")[0]
            spec = importlib.util.spec_from_file_location(name, paths[0])
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            found[key] = module
    return found


def anchor_calls(anchors, image, tris, colors, h, w):
    """{label: zero-arg callable} for the anchors' z-buffer and colour paths, buffers included."""
    calls = {}
    nv, nt = len(image), len(tris)
    if "face3d" in anchors:
        f3 = anchors["face3d"]

        def f3_z():
            depth = np.zeros((h, w), np.float32) - 999999.0
            f3.rasterize_triangles_core(image, tris, depth, np.zeros((h, w), np.int32) - 1,
                                       np.zeros((h * w, 3), np.float32), nv, nt, h, w)

        def f3_colors():
            f3.render_colors_core(np.zeros((h, w, 3), np.float32), image, tris, colors,
                                 np.zeros((h, w), np.float32) - 999999.0, nv, nt, h, w, 3)
        calls["zbuffer:face3d"] = f3_z
        calls["colors:face3d"] = f3_colors
    if "sim3dr" in anchors:
        s3 = anchors["sim3dr"]

        def s3_z():
            depth = np.zeros((h, w), np.float32) - 1e8
            s3.rasterize_triangles(image, tris, depth, np.zeros((h, w), np.int32) - 1,
                                  np.zeros((h * w, 3), np.float32), nt, h, w)

        def s3_pncc():
            s3.rasterize(np.zeros((h, w, 3), np.uint8), image, tris, colors,
                        np.zeros((h, w), np.float32) - 1e8, nt, h, w, 3, 1.0, False)
        calls["zbuffer:Sim3DR"] = s3_z
        calls["pncc:Sim3DR"] = s3_pncc
    return calls


class Report:
    """Rows as they are measured, plus the ratio lines printed at the end."""

    def __init__(self):
        self.overheads, self.anchors = [], []

    @staticmethod
    def row(mesh, size, op, ms, numpy_ms=None):
        ratio = f"{numpy_ms / ms:8.1f}x" if numpy_ms else ""
        print(f"{mesh:9} {size:>4} {op:30} {ms:8.3f} {1e3 / ms:8.0f} {ratio:>9}", flush=True)

    def overhead(self, mesh, size, op, timed: Timings):
        self.overheads.append(f"{mesh:9} {size:>4} {op:21} kernel {timed.ms('kernel'):6.3f} ms; call fresh "
                              f"{timed.ratio('fresh', 'kernel'):5.2f}x, call out= "
                              f"{timed.ratio('out=', 'kernel'):5.2f}x")

    def versus(self, mesh, size, op, timed: Timings, ours=("kernel", "fresh", "out=")):
        for label in timed.labels():
            if ":" not in label:
                continue
            mine = [o for o in ours if o in timed]
            parts = ", ".join(f"{o} {timed.ratio(label, o):5.2f}x" for o in mine)
            self.anchors.append(f"{mesh:9} {size:>4} {op:9} vs {label.split(':')[1]:7} {timed.ms(label):6.3f} ms: "
                                f"ours ({mine[0]}) {timed.ms(mine[0]):6.3f} ms; speed-up {parts}")


def time_case(report, label, grid, size, anchors, repeats):
    """One mesh at one image size: z-buffer, colours, PNCC (ours, the kernel, the anchors)."""
    model, image, tris, _ = face_mesh(grid, size)
    code = ncc_code(model)
    colors = np.ascontiguousarray(code * 255, dtype=np.float32)
    numpy_ms = best_ms(partial(reference_rasterize, image, tris, size, size), 1)
    report.row(label, size, "numpy reference", numpy_ms, numpy_ms)
    anchor = anchor_calls(anchors, image, tris, colors, size, size)
    raster = rasterize(image, tris, size, size)
    picture = render_attributes(image, tris, colors, size, size)
    depth = np.empty((size, size), np.float32)
    cases = {
        "zbuffer": {
            "kernel": partial(_raster.rasterize_into, image, tris, raster.depth, raster.triangle_id,
                              raster.barycentric),
            "fresh": partial(rasterize, image, tris, size, size),
            "out=": partial(rasterize, image, tris, size, size, out=raster)},
        "colors": {
            "kernel": partial(_raster.rasterize_into, image, tris, depth, attributes=colors, out=picture),
            "fresh": partial(render_attributes, image, tris, colors, size, size),
            "out=": partial(render_attributes, image, tris, colors, size, size, out=picture)},
        "pncc": {"fresh": partial(render_pncc, image, tris, code, size, size)},
    }
    names = {"zbuffer": "rasterize", "colors": "render_attributes C=3", "pncc": "render_pncc"}
    for op, fns in cases.items():
        fns.update({k: f for k, f in anchor.items() if k.startswith(op + ":")})
        timed = interleaved(fns, repeats)
        for name in timed.labels():
            shown = {"kernel": f"{names[op]} kernel", "fresh": names[op], "out=": f"{names[op]} out="}
            report.row(label, size, shown.get(name, name), timed.ms(name), numpy_ms)
        if "kernel" in timed:
            report.overhead(label, size, names[op], timed)
        report.versus(label, size, op, timed)


def time_uv(report, label, grid, anchors, repeats):
    """A 256² UV position map (render_uv) of one mesh, against face3d's render_colors."""
    _, image, tris, uv = face_mesh(grid, 256)
    fns = {"fresh": partial(render_uv, uv, tris, image, 256, 256)}
    if "face3d" in anchors:
        uv3 = np.concatenate([uv, np.zeros((len(uv), 1), np.float32)], 1)
        fns["UV posmap:face3d"] = partial(face3d_uv, anchors["face3d"], uv3, tris, image)
    timed = interleaved(fns, repeats)
    for name in timed.labels():
        report.row(label, 256, "UV position map" if name == "fresh" else name, timed.ms(name))
    report.versus(label, 256, "UV posmap", timed, ours=("fresh",))


def face3d_uv(module, uv3, tris, image):
    """face3d's UV position map: render_colors_core of the vertices at their UV positions."""
    module.render_colors_core(np.zeros((256, 256, 3), np.float32), uv3, tris, image,
                              np.zeros((256, 256), np.float32) - 999999.0, len(uv3), len(tris), 256, 256, 3)


def rasterize_pairs(batch, height, width, num_threads):
    """rasterize_batch of (vertices, triangles, attributes) triples (attributes dropped)."""
    return rasterize_batch([m[:2] for m in batch], height, width, num_threads=num_threads)


def time_batches(batch_size, repeats):
    _, image, tris, _ = face_mesh(196, 256)
    code = ncc_code(face_mesh(196, 256)[0])
    batch = [(image, tris, code)] * batch_size
    threads = as_threads(None)
    rounds = max(3, repeats // 3)
    print(f"\nbatched, {batch_size} x 256², 38k/76k mesh, 1 vs {threads} threads timed in turn, "
          f"min of {rounds} (on a shared machine other processes take cores too):")
    for name, fn in (("render_attributes_batch", render_attributes_batch), ("rasterize_batch", rasterize_pairs)):
        timed = interleaved_best_ms({n: partial(fn, batch, 256, 256, num_threads=n)
                                     for n in sorted({1, threads})}, rounds)
        one, many = timed[1], timed[threads]
        print(f"  {name:24}: 1 thread {batch_size * 1e3 / one:6.0f} images/s, {threads} threads "
              f"{batch_size * 1e3 / many:6.0f} images/s ({one / many:.2f}x)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per case (min is kept)")
    parser.add_argument("--quick", action="store_true", help="256² only, 38k-vertex mesh only")
    parser.add_argument("--batch", type=int, default=32, help="images per batched call")
    args = parser.parse_args(argv)
    print_machine()
    anchors = load_anchors()
    print(f"anchors: {', '.join(anchors) or 'none (set FACE3D_RENDER_ANCHORS)'}; "
          f"cores available: {as_threads(None)}; every ms is the min of {args.repeats} rounds, "
          f"ours, the kernel and the anchors timed in turn within each round")
    meshes = [("38k/76k", 196)] + ([] if args.quick else [("53k/106k", 231)])
    sizes = [256] if args.quick else [120, 256, 450]
    print(f"{'mesh':9} {'size':>4} {'operation':30} {'ms':>8} {'img/s':>8} {'vs numpy':>9}")
    report = Report()
    for label, grid in meshes:
        for size in sizes:
            time_case(report, label, grid, size, anchors, args.repeats)
        time_uv(report, label, grid, anchors, args.repeats)

    print("\ncall / kernel (public call over the Cython kernel on the same inputs; fresh buffers, "
          "then reused out= buffers; median of the per-round ratios):")
    print("\n".join("  " + r for r in report.overheads))
    if report.anchors:
        print("\nspeed-up over each anchor (anchor / ours, median of the per-round ratios; kernel, public "
              "call fresh and out=; same mesh, same run):")
        print("\n".join("  " + r for r in report.anchors))
    time_batches(args.batch, args.repeats)


if __name__ == "__main__":
    main()
