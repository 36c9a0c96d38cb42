"""Benchmark of the CPU rendering kernels (not a test: timings on a shared machine are noisy).

Times rasterize, render_attributes (3 float channels), PNCC and a 256x256 UV position map on two
face-like meshes of the sizes of the BFM no-neck (38,416 vertices / 76,050 triangles) and full
(53,361 / 105,800) topologies, at 120², 256² and 450², single-threaded, then batched throughput
on 1 thread and on every core. Ratios are against the numpy reference of tests/ measured in the
same run. Set FACE3D_RENDER_ANCHORS to a folder holding built face3d ``mesh_core_cython*.so``
and/or 3DDFA_V2 ``Sim3DR_Cython*.so`` to time them on the same meshes (skipped otherwise).

    python benchmarks/render.py [--repeats 15] [--quick]
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from face3d_data.render import (ncc_code, rasterize, rasterize_batch, render_attributes,  # noqa: E402
                                render_attributes_batch, render_pncc, render_uv)
from face3d_data.render._checks import as_threads  # noqa: E402
from test_render_reference import reference_rasterize  # noqa: E402


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


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case (min is kept)")
    parser.add_argument("--quick", action="store_true", help="256² only, 38k-vertex mesh only")
    parser.add_argument("--batch", type=int, default=32, help="images per batched call")
    args = parser.parse_args(argv)
    anchors = load_anchors()
    print(f"anchors: {', '.join(anchors) or 'none (set FACE3D_RENDER_ANCHORS)'}; "
          f"cores available: {as_threads(None)}")
    meshes = [("38k/76k", 196)] + ([] if args.quick else [("53k/106k", 231)])
    sizes = [256] if args.quick else [120, 256, 450]
    print(f"{'mesh':9} {'size':>4} {'operation':22} {'ms':>8} {'img/s':>8} {'vs numpy':>9} {'vs ours':>8}")

    def row(mesh, size, op, ms, numpy_ms=None, ours_ms=None):
        ratio = f"{numpy_ms / ms:8.1f}x" if numpy_ms else ""
        rel = f"{ms / ours_ms:7.2f}x" if ours_ms else ""
        print(f"{mesh:9} {size:>4} {op:22} {ms:8.3f} {1e3 / ms:8.0f} {ratio:>9} {rel:>8}", flush=True)

    for label, grid in meshes:
        for size in sizes:
            model, image, tris, uv = face_mesh(grid, size)
            code = ncc_code(model)
            colors = np.ascontiguousarray(code * 255, dtype=np.float32)
            numpy_ms = best_ms(lambda: reference_rasterize(image, tris, size, size), 1)
            ours_z = best_ms(lambda: rasterize(image, tris, size, size), args.repeats)
            row(label, size, "numpy reference", numpy_ms, numpy_ms)
            row(label, size, "rasterize", ours_z, numpy_ms)
            ours_c = best_ms(lambda: render_attributes(image, tris, colors, size, size), args.repeats)
            row(label, size, "render_attributes C=3", ours_c, numpy_ms)
            ours_p = best_ms(lambda: render_pncc(image, tris, code, size, size), args.repeats)
            row(label, size, "pncc", ours_p, numpy_ms)
            for name, fn in anchor_calls(anchors, image, tris, colors, size, size).items():
                ours = {"zbuffer": ours_z, "colors": ours_c, "pncc": ours_p}[name.split(":")[0]]
                row(label, size, name, best_ms(fn, args.repeats), numpy_ms, ours)
        model, image, tris, uv = face_mesh(grid, 256)
        ms = best_ms(lambda: render_uv(uv, tris, image, 256, 256), args.repeats)
        row(label, 256, "UV position map", ms)
        if "face3d" in anchors:
            uv3 = np.concatenate([uv, np.zeros((len(uv), 1), np.float32)], 1)
            m = anchors["face3d"]

            def f3_uv():
                m.render_colors_core(np.zeros((256, 256, 3), np.float32), uv3, tris, image,
                                     np.zeros((256, 256), np.float32) - 999999.0,
                                     len(uv3), len(tris), 256, 256, 3)
            row(label, 256, "UV posmap:face3d", best_ms(f3_uv, args.repeats), None, ms)

    model, image, tris, uv = face_mesh(196, 256)
    code = ncc_code(model)
    batch = [(image, tris, code)] * args.batch
    threads = as_threads(None)
    print(f"\nbatched render_attributes, {args.batch} x 256², 38k/76k mesh:")
    one = best_ms(lambda: render_attributes_batch(batch, 256, 256, num_threads=1), max(3, args.repeats // 3))
    print(f"  1 thread : {args.batch * 1e3 / one:8.0f} images/s")
    many = best_ms(lambda: render_attributes_batch(batch, 256, 256, num_threads=threads),
                   max(3, args.repeats // 3))
    print(f"  {threads} threads: {args.batch * 1e3 / many:8.0f} images/s  ({one / many:.2f}x)")
    zb1 = best_ms(lambda: rasterize_batch([b[:2] for b in batch], 256, 256, num_threads=1), 3)
    zbn = best_ms(lambda: rasterize_batch([b[:2] for b in batch], 256, 256, num_threads=threads), 3)
    print(f"  rasterize_batch: 1 thread {args.batch * 1e3 / zb1:.0f} images/s, "
          f"{threads} threads {args.batch * 1e3 / zbn:.0f} images/s ({zb1 / zbn:.2f}x)")


if __name__ == "__main__":
    main()
