"""Benchmark: scan registration cost — NICP factorisation per solver, closest points, whole scans.

Templates:
  "14k": the embedded model (14,017 vertices, 56k unknowns); target: one registration < 20 s.
  "56k": the embedded model subdivided once (55,593 vertices, 222k unknowns), the size of the
         53,215-vertex BFM template; target: one registration < 2 min.
Scans: :func:`face3d_data.registration.make_synthetic_scan` of each template (face region,
subdivided, noised, with a hole).

Per template it reports
  - one NICP factorisation + solve (3 right-hand sides) for every installed solver, the first
    (with the symbolic analysis) and a refactorisation, at high and low stiffness;
  - one closest-point pass (all template vertices) with libigl's AABB tree and with the KD-tree
    over triangle centroids;
  - one whole registration (similarity, 3DMM fit, NICP, QA) with the default solver, and its
    correspondence error against the synthetic ground truth.
BLAS is limited to one thread (as the runner does per item); ratios in the same run are what
counts on a shared machine.

Run:  python benchmarks/registration.py [--skip-splu-56k] [--no-56k]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import print_machine
from threadpoolctl import threadpool_limits

from face3d_data.morphable import load_model
from face3d_data.registration import (
    RegistrationOptions,
    Template,
    make_synthetic_scan,
    register_scan,
)
from face3d_data.registration.nicp import NICPSystem
from face3d_data.registration.solvers import available_backends
from face3d_data.registration.surface import ClosestPoints, orient_outward
from face3d_data.registration.synthetic import subdivided_model


def _solver_times(model, backend: str):
    v = model.mean.astype(np.float64)
    v = (v - v.mean(0)) / np.linalg.norm(v.max(0) - v.min(0))
    tri, _ = orient_outward(v, model.triangles)
    n = len(v)
    rng = np.random.default_rng(0)
    w = (rng.random(n) > 0.4).astype(float)          # 40 % rejected, exact zeros
    t0 = time.perf_counter()
    sys_ = NICPSystem(v, tri, landmark_vertices=model.landmarks[17:], backend=backend)
    build = time.perf_counter() - t0
    out = {"build": build}
    x = sys_.identity()
    for label, alpha in (("first a=50", 50.0), ("refactor a=50", 50.0), ("refactor a=0.8", 0.8)):
        t0 = time.perf_counter()
        sys_.solve(alpha, w, v + 0.001, 0.5, v[model.landmarks[17:]], 1e-6, x)
        out[label] = time.perf_counter() - t0
    return out


def _closest_times(model, scan):
    out = {}
    q = scan.truth * 1.0
    for method in ("igl", "kdtree"):
        try:
            t0 = time.perf_counter()
            cp = ClosestPoints(scan.vertices, scan.triangles, method)
            build = time.perf_counter() - t0
        except ImportError:
            continue
        t0 = time.perf_counter()
        cp.query(q)
        out[method] = (build, time.perf_counter() - t0)
    return out


def _registration(model, scan, solver="auto"):
    tpl = Template.from_model(model)
    t0 = time.perf_counter()
    reg = register_scan(tpl, scan.vertices, scan.triangles, scan.landmarks, np.arange(68),
                        options=RegistrationOptions(solver=solver))
    total = time.perf_counter() - t0
    err = np.linalg.norm(reg.vertices_scan - scan.truth, axis=1)[scan.on_scan] * scan.mm_per_unit
    return total, reg, float(err.mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-splu-56k", action="store_true", help="skip SuperLU on the 56k template (~30 s each)")
    ap.add_argument("--no-56k", action="store_true", help="only the 14k template")
    args = ap.parse_args(argv)
    print_machine()
    base = load_model("builtin")
    models = [("14k", base)] + ([] if args.no_56k else [("56k", subdivided_model(base))])
    backends = available_backends()
    print(f"solvers installed: {', '.join(backends)}")
    with threadpool_limits(limits=1):
        for name, model in models:
            print(f"\n== template {name}: {model.n_vertices} vertices, {4 * model.n_vertices} unknowns ==")
            ref = None
            rows = []
            for b in backends:
                if b == "splu" and name == "56k" and args.skip_splu_56k:
                    continue
                t = _solver_times(model, b)
                rows.append((b, t))
                if b == "splu":
                    ref = t
            print(f"{'solver':<10} {'build':>7} {'first a=50':>11} {'refac a=50':>11} {'refac a=0.8':>12}  vs splu")
            for b, t in rows:
                ratio = "" if ref is None else f"{ref['refactor a=50'] / t['refactor a=50']:.1f}x"
                print(f"{b:<10} {t['build']:7.2f} {t['first a=50']:11.2f} {t['refactor a=50']:11.2f} "
                      f"{t['refactor a=0.8']:12.2f}  {ratio}")
            scan = make_synthetic_scan(model, seed=1, unit="mm", subdivisions=1)
            print(f"scan: {len(scan.vertices)} vertices, {len(scan.triangles)} triangles")
            for method, (build, query) in _closest_times(model, scan).items():
                print(f"closest points {method:<7} build {build:6.3f} s  query {query:6.3f} s "
                      f"({model.n_vertices} points)")
            total, reg, err = _registration(model, scan)
            tm = reg.qa["timing_s"]
            print(f"whole registration ({reg.qa['solver']}): {total:.1f} s  [fit {tm['fit']:.1f}, NICP factor+solve "
                  f"{tm['nicp_factor_solve']:.1f}, closest {tm['nicp_closest']:.1f}; {reg.qa['iterations']} solves]  "
                  f"status {reg.status}, correspondence error {err:.2f} mm, NoW-crop median "
                  f"{reg.qa['now_crop']['median_mm']:.3f} mm")


if __name__ == "__main__":
    main()
