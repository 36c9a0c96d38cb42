"""Benchmark: fit_landmarks fits/s, one face at a time vs batched, against face3d's fitter.

Models (random, BFM-like units, 68 landmark vertices only, no mesh -> fixed jaw vertices):
  "40+10"  : 3DDFA's truncated basis size;   target >= 2,000 fits/s batched
  "199+29" : the full 300W-LP basis size;    target >=   500 fits/s batched
plus the builtin model (40+13, mesh, landmark marching) for information.

The reference is a straightforward implementation of face3d's ``fit_points``, written here from
the description in docs/formats.md#face3d-landmark-fitting (Gold Standard affine camera by pseudo-inverse, ``P2sRt``
without orthogonalisation, expression then shape Tikhonov solves with λ = 20 / 40 via ``inv``,
4 iterations, one face at a time). It runs on the same landmarks (Matlab y-up frame, as it
expects) and its reprojection error is computed with its own (s, R, t).

Run:  python benchmarks/fitting.py [--faces 2000] [--noise 1.0]
Timings on a shared machine are noisy; compare the ratios printed in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _machine import print_machine

from face3d_data.coords import canonical_to_matlab
from face3d_data.fitting import fit_landmarks
from face3d_data.fitting.synthetic import synthetic_faces
from face3d_data.morphable import MorphableModel
from face3d_data.morphable.builtin import builtin_model
from face3d_data.morphable.testing import random_model


# ----------------------------------------------------------------------------- face3d reference
def _face3d_affine(x: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Gold Standard affine camera (H&Z Alg. 7.2) the way face3d builds it: (3, 4) P."""
    n = len(x)
    mean2, mean3 = x.mean(0), X.mean(0)
    x_c, X_c = x - mean2, X - mean3
    s2 = np.sqrt(2) / np.sqrt((x_c ** 2).sum(1)).mean()
    s3 = np.sqrt(3) / np.sqrt((X_c ** 2).sum(1)).mean()
    T = np.array([[s2, 0, -s2 * mean2[0]], [0, s2, -s2 * mean2[1]], [0, 0, 1]])
    U = np.diag([s3, s3, s3, 1.0])
    U[:3, 3] = -s3 * mean3
    xh = x_c * s2
    Xh = np.column_stack([X_c * s3, np.ones(n)])
    A = np.zeros((2 * n, 8))
    A[0::2, :4] = Xh
    A[1::2, 4:] = Xh
    p8 = np.linalg.pinv(A) @ xh.reshape(-1)
    P = np.zeros((3, 4))
    P[0], P[1] = p8[:4], p8[4:]
    P[2, 3] = 1.0
    return np.linalg.inv(T) @ P @ U


def _face3d_p2srt(P: np.ndarray):
    t = P[:, 3]
    r1, r2 = P[0, :3], P[1, :3]
    s = (np.linalg.norm(r1) + np.linalg.norm(r2)) / 2
    r1, r2 = r1 / np.linalg.norm(r1), r2 / np.linalg.norm(r2)
    return s, np.vstack([r1, r2, np.cross(r1, r2)]), t


def _face3d_solve(M, t, mean, target, pc, sigma, lam, fixed):
    """One regularised linear solve of face3d's alternation (shape or expression), pose fixed."""
    n_k = pc.shape[1]
    A = np.einsum("pa,nak->npk", M, pc.reshape(-1, 3, n_k)).reshape(-1, n_k)
    b = ((mean + fixed).reshape(-1, 3) @ M.T + t[:2]).reshape(-1)
    return np.linalg.inv(A.T @ A + lam * np.diag(1.0 / sigma.astype(np.float64) ** 2)) @ (A.T @ (target - b))


def face3d_fit(x: np.ndarray, model: MorphableModel, max_iter: int = 4, lambda_exp: float = 20.0,
               lambda_shape: float = 40.0):
    """face3d ``fit_points`` (docs/formats.md#face3d-landmark-fitting) for one face; x (68, 2) Matlab frame (y up)."""
    lm = model.landmarks
    mean = model.mean[lm].astype(np.float64).reshape(-1)
    shape_pc = model.shape_basis[lm].reshape(-1, model.n_shape).astype(np.float64)
    exp_pc = model.exp_basis[lm].reshape(-1, model.n_exp).astype(np.float64)
    alpha = np.zeros(model.n_shape)
    beta = np.zeros(model.n_exp)
    target = x.reshape(-1)
    for _ in range(max_iter):
        X = (mean + shape_pc @ alpha + exp_pc @ beta).reshape(-1, 3)
        s, R, t = _face3d_p2srt(_face3d_affine(x, X))
        M = s * R[:2]
        beta = _face3d_solve(M, t, mean, target, exp_pc, model.exp_std, lambda_exp, shape_pc @ alpha)
        alpha = _face3d_solve(M, t, mean, target, shape_pc, model.shape_std, lambda_shape, exp_pc @ beta)
    X = (mean + shape_pc @ alpha + exp_pc @ beta).reshape(-1, 3)
    s, R, t = _face3d_p2srt(_face3d_affine(x, X))
    return X @ (s * R[:2]).T + t[:2]


# ----------------------------------------------------------------------------- benchmark
def landmark_only_model(n_shape: int, n_exp: int, seed: int) -> MorphableModel:
    m = random_model(300, n_shape, n_exp, seed=seed)
    lm = m.landmarks
    return MorphableModel(m.mean[lm], m.shape_basis[lm], m.shape_std, m.exp_basis[lm], m.exp_std,
                          landmarks=np.arange(68), name=f"random {n_shape}+{n_exp} (68 vertices)")


def rate(fn, n: int) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def bench(name, model, n_faces, n_single, n_ref, noise, target=None):
    faces = synthetic_faces(model, n_faces, seed=0, noise_px=noise)
    hw = faces.image_hw
    fit_landmarks(faces.landmarks[:4], model, hw)                       # warm the per-model cache
    batched = rate(lambda: fit_landmarks(faces.landmarks, model, hw), n_faces)
    single = rate(lambda: [fit_landmarks(faces.landmarks[i], model, hw) for i in range(n_single)], n_single)
    ours = fit_landmarks(faces.landmarks[:n_ref], model, hw)
    x_m = canonical_to_matlab(faces.landmarks[:n_ref], hw[0])
    ref_pts = []
    ref_rate = rate(lambda: ref_pts.extend(face3d_fit(x_m[i], model) for i in range(n_ref)), n_ref)
    ref_err = np.linalg.norm(np.stack(ref_pts) - x_m, axis=2).mean()
    clean_ours = np.linalg.norm(ours.landmarks - faces.clean[:n_ref], axis=2).mean()
    ours_angle = np.degrees(np.abs(ours.pose_para[:, :3] - faces.pose_para[:n_ref, :3])).mean()
    print(f"{name:34s} batched {batched:8.0f} fits/s | single {single:6.0f} fits/s | "
          f"face3d ref {ref_rate:5.0f} fits/s | batched/ref x{batched / ref_rate:5.1f}"
          + (f" | target {target} ({'met' if batched >= target else 'NOT met'})" if target else ""))
    print(f"{'':34s} reprojection error px: ours {ours.error_px.mean():.3f} vs face3d {ref_err:.3f}"
          f" | ours vs clean landmarks {clean_ours:.3f} | mean angle error {ours_angle:.3f} deg"
          f" | contour={ours.contour}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=2000, help="batch size for the batched timing")
    ap.add_argument("--single", type=int, default=200, help="faces fitted one at a time")
    ap.add_argument("--ref", type=int, default=200, help="faces for the face3d reference")
    ap.add_argument("--noise", type=float, default=1.0, help="landmark noise std (px)")
    a = ap.parse_args()
    print_machine()
    print(f"{a.faces} faces batched, {a.single} single, {a.ref} reference; noise {a.noise} px; 450x450 images")
    bench("40+10 landmark-only", landmark_only_model(40, 10, 1), a.faces, a.single, a.ref, a.noise, 2000)
    bench("199+29 landmark-only", landmark_only_model(199, 29, 2), a.faces, a.single, a.ref, a.noise, 500)
    bench("builtin 40+13 (mesh, marching)", builtin_model(), a.faces // 2, a.single // 2, a.ref // 2, a.noise)


if __name__ == "__main__":
    main()
