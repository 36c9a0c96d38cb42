"""Benchmark: MorphableModel.vertices on a BFM-sized model, and synthetic 300W-LP generation.

    python benchmarks/morphable.py [--batch 256] [--samples 24] [--repeats 5]

1. ``vertices`` for a batch of faces of a random 53,215-vertex, 199 + 29-mode model (the 3DDFA
   BFM topology), against two references measured in the same run: face3d's per-face recipe
   (``shapeMU + shapePC·α + expPC·β``, two matrix-vector products per face) and a batched
   ``einsum`` over the (N, 3, K) bases. Prints milliseconds and ratios (timings on a shared
   machine are noisy; the ratios are what to compare).
2. ``synthesize`` samples/s in-process (render only, builtin model, 450×450), and the
   ``synth_300wlp`` stage end to end (JPEG + .mat writes) with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _machine import print_machine  # noqa: E402

from face3d_data.morphable import builtin_model  # noqa: E402
from face3d_data.morphable.testing import random_model  # noqa: E402
from face3d_data.w300lp.synth import synthesize  # noqa: E402


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_vertices(batch: int, repeats: int) -> None:
    t = time.perf_counter()
    model = random_model(53215, 199, 29, seed=0)
    print(f"random model {model.n_vertices} vertices, {model.n_shape}+{model.n_exp} modes "
          f"(built in {time.perf_counter() - t:.1f} s)")
    rng = np.random.default_rng(0)
    sp = (rng.standard_normal((batch, model.n_shape)) * model.shape_std).astype(np.float32)
    ep = (rng.standard_normal((batch, model.n_exp)) * model.exp_std).astype(np.float32)
    # face3d's layout: (3N, K) matrices, one face at a time
    shape_pc = np.ascontiguousarray(model.shape_basis.reshape(-1, model.n_shape))
    exp_pc = np.ascontiguousarray(model.exp_basis.reshape(-1, model.n_exp))
    mu = model.mean.reshape(-1)

    def per_face():
        return [(mu + shape_pc @ sp[b] + exp_pc @ ep[b]).reshape(-1, 3) for b in range(batch)]

    def einsum():
        return (model.mean + np.einsum("nck,bk->bnc", model.shape_basis, sp)
                + np.einsum("nck,bk->bnc", model.exp_basis, ep))

    ours = model.vertices(sp, ep)
    ref = np.stack(per_face())
    err = float(np.abs(ours - ref).max() / np.abs(ref).max())
    t_ours = best_of(lambda: model.vertices(sp, ep), repeats)
    t_face = best_of(per_face, max(1, repeats // 2))
    t_eins = best_of(einsum, 1)
    print(f"vertices, batch {batch}: {t_ours * 1e3:8.1f} ms  (one GEMM)")
    print(f"  face3d per-face GEMV loop: {t_face * 1e3:8.1f} ms  -> ours is {t_face / t_ours:5.1f}x faster")
    print(f"  batched einsum:            {t_eins * 1e3:8.1f} ms  -> ours is {t_eins / t_ours:5.1f}x faster")
    print(f"  max relative difference vs per-face reference: {err:.2e}")
    t1 = best_of(lambda: model.vertices(sp[0], ep[0]), repeats)
    print(f"vertices, one face: {t1 * 1e3:.2f} ms")


def bench_synthesis(samples: int) -> None:
    model = builtin_model()
    rng = np.random.default_rng(0)
    synthesize(model, rng)  # warm-up
    t = time.perf_counter()
    for _ in range(samples):
        synthesize(model, rng)
    dt = time.perf_counter() - t
    print(f"synthesize (render only, 450x450, builtin {model.n_vertices} vertices): "
          f"{samples / dt:.1f} samples/s on 1 core")

    from pipelines.core import RunOptions, build_config, run_stage
    from pipelines.registry import stage_class

    with tempfile.TemporaryDirectory() as out:
        cfg = build_config("synth_300wlp", explicit={"count": samples})
        s = run_stage(stage_class("synth_300wlp"), RunOptions(out=out, jobs=2, quiet=True), cfg=cfg)
        print(f"synth_300wlp stage (jpg + mat + pts, loky, 2 jobs): {samples / s.seconds:.1f} samples/s "
              f"({s.seconds:.1f} s for {samples}, including worker start-up)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print_machine()
    bench_vertices(args.batch, args.repeats)
    bench_synthesis(args.samples)


if __name__ == "__main__":
    main()
