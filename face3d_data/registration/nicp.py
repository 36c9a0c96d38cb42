"""Optimal-step non-rigid ICP (Amberg, Romdhani and Vetter, CVPR 2007).

Every template vertex ``i`` gets its own affine transform ``X_i`` (4 × 3, acting on the row
``[x y z 1]``). For fixed correspondences ``u_i`` with weights ``w_i ∈ {0, 1}`` the cost

    E(X) = Σ_e α_e² ‖(X_i − X_j) G‖²  +  Σ_i w_i ‖v̂_iᵀ X_i − u_i‖²  +  β² Σ_l ‖v̂_lᵀ X_l − q_l‖²
           + ε ‖X − X_prev‖²

is quadratic; its normal equations ``(AᵀA) X = AᵀB`` (size 4n, three right-hand sides) are solved
exactly. ``α_e = α · (s_i + s_j) / 2`` with a per-vertex stiffness multiplier ``s`` (stiffer on
ears and neck), ``G = diag(1, 1, 1, γ)``. The ridge ``ε`` keeps vertices without data or
stiffness determined (it does not bias a converged solution: at ``X = X_prev`` it vanishes). The
outer loop lowers ``α`` along a schedule; the inner loop alternates closest points and solves
until ``‖ΔX‖ / √(12 n) < tol`` or ``max_inner`` solves.

Correspondences are dropped (``w_i = 0``) when the closest point lies on a boundary edge of the
target, when the template and target normals disagree (cosine below ``min_cos``), or when the
distance exceeds the step's cap. The template must be wound outward like the target
(:func:`face3d_data.registration.surface.orient_outward`); otherwise the normal test rejects
every correspondence.

Frames and units: whatever the caller passes, usually the scan frame normalised so the
template's bounding-box diagonal is 1 (so α, β and distances are unit-free).

The normal matrix keeps one sparsity pattern for the whole registration
(:class:`face3d_data.registration.solvers.FixedPattern`): symbolic analysis once, numeric
refactorisation per solve.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from face3d_data.registration.solvers import FixedPattern, PatternSolver
from face3d_data.registration.surface import (
    ClosestPoints,
    border_corner_mask,
    face_normals,
    unique_edges,
    vertex_normals,
)


@dataclasses.dataclass(frozen=True)
class NICPSchedule:
    """Per-step stiffness ``alphas``, landmark weights ``betas`` and distance caps ``caps``.

    All three have one value per step (``caps`` in the caller's units; ``inf`` = no cap).
    """

    alphas: tuple = (50.0, 20.0, 5.0, 2.0, 0.8)
    betas: tuple = (2.0, 1.0, 0.5, 0.2, 0.1)
    caps: tuple = (0.08, 0.05, 0.03, 0.02, 0.01)
    max_inner: int = 2
    tol: float = 1e-3
    min_cos: float = 0.5
    gamma: float = 1.0
    ridge: float = 1e-6

    def __post_init__(self):
        if not (len(self.alphas) == len(self.betas) == len(self.caps)) or not self.alphas:
            raise ValueError("NICPSchedule: alphas, betas and caps need the same non-zero length")


@dataclasses.dataclass
class Target:
    """The surface to register onto: a triangle mesh with its queries precomputed.

    Attributes:
        vertices (N, 3), triangles (M, 3); vertex_normals (N, 3) unit;
        border (M, 3) bool: edge opposite corner k of triangle f is a boundary edge.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    vertex_normals: np.ndarray
    border: np.ndarray
    closest: ClosestPoints

    @classmethod
    def build(cls, vertices, triangles, method: str = "auto", flip_normals: bool = False) -> Target:
        v = np.ascontiguousarray(vertices, np.float64)
        t = np.ascontiguousarray(triangles, np.int64)
        n = vertex_normals(v, t)
        return cls(v, t, -n if flip_normals else n, border_corner_mask(t), ClosestPoints(v, t, method))

    def flipped(self) -> Target:
        return dataclasses.replace(self, vertex_normals=-self.vertex_normals)


@dataclasses.dataclass
class Correspondences:
    """Per template vertex: closest target point, its normal, distance, flags and the weight used."""

    points: np.ndarray      # (n, 3)
    normals: np.ndarray     # (n, 3) interpolated target normal
    distance: np.ndarray    # (n,)
    cos: np.ndarray         # (n,) cosine between template and target normals
    on_border: np.ndarray   # (n,) bool
    weight: np.ndarray      # (n,) float, 0 or the data weight


def find_correspondences(target: Target, vertices: np.ndarray, normals: np.ndarray, cap: float,
                         min_cos: float, data_weight: np.ndarray | None = None) -> Correspondences:
    """Closest points of ``vertices`` on ``target`` and the rejection rules (see module docstring).

    Args:
        vertices, normals: (n, 3) deformed template and its unit vertex normals.
        cap: maximum accepted distance; min_cos: minimum normal cosine.
        data_weight: optional (n,) per-vertex data weight multiplying the 0/1 acceptance.
    """
    closest, tri, bary, dist = target.closest.query(vertices)
    corners = target.triangles[tri]
    tn = np.einsum("qk,qkd->qd", bary, target.vertex_normals[corners])
    tn /= np.maximum(np.linalg.norm(tn, axis=1, keepdims=True), 1e-300)
    cos = np.einsum("ij,ij->i", tn, normals)
    tol = 1e-6
    on_border = np.any(target.border[tri] & (bary <= tol), axis=1)
    ok = (~on_border) & (cos >= min_cos) & (dist <= cap)
    w = ok.astype(np.float64)
    if data_weight is not None:
        w *= data_weight
    return Correspondences(closest, tn, dist, cos, on_border, w)


class NICPSystem:
    """The normal equations of one template on a fixed sparsity pattern.

    Args:
        vertices: (n, 3) template (fixed; the transforms act on it).
        triangles: (m, 3) template triangles.
        stiffness: optional (n,) per-vertex stiffness multiplier (default 1).
        landmark_vertices: optional (L,) template vertex indices with landmark targets.
        backend: solver backend (see :mod:`face3d_data.registration.solvers`).
    """

    def __init__(self, vertices, triangles, stiffness=None, landmark_vertices=None, backend: str = "auto"):
        self.v = np.asarray(vertices, np.float64)
        n = len(self.v)
        self.n = n
        self.vh = np.concatenate([self.v, np.ones((n, 1))], 1)            # (n, 4)
        self.edges = unique_edges(triangles)
        s = np.ones(n) if stiffness is None else np.asarray(stiffness, np.float64)
        self.edge_stiff = 0.5 * (s[self.edges[:, 0]] + s[self.edges[:, 1]])
        self.lm = (np.zeros(0, np.int64) if landmark_vertices is None
                   else np.asarray(landmark_vertices, np.int64))
        # pattern: every vertex's full 4x4 block (upper part) + (4i+k, 4j+k) per edge
        a, b = np.triu_indices(4)
        self._ab = (a, b)
        base = 4 * np.arange(n)[:, None]
        blk_r, blk_c = base + a[None, :], base + b[None, :]
        k4 = np.arange(4)[None, :]
        e_r = 4 * self.edges[:, :1] + k4
        e_c = 4 * self.edges[:, 1:] + k4
        self.pattern = FixedPattern(4 * n, np.concatenate([blk_r.ravel(), e_r.ravel()]),
                                    np.concatenate([blk_c.ravel(), e_c.ravel()]))
        self.blk_slots = self.pattern.slots(blk_r, blk_c).reshape(n, len(a))
        self.edge_slots = self.pattern.slots(e_r, e_c).reshape(-1, 4)
        self.outer = self.vh[:, a] * self.vh[:, b]                          # (n, 10) v̂ v̂ᵀ upper
        self.diag_pos = np.flatnonzero(a == b)                              # the 4 diagonal entries
        deg = np.zeros(n)
        np.add.at(deg, self.edges[:, 0], self.edge_stiff ** 2)
        np.add.at(deg, self.edges[:, 1], self.edge_stiff ** 2)
        self.deg = deg                                                      # Σ_e s_e² per vertex
        self.solver = PatternSolver(self.pattern, backend)
        self.factor_time = 0.0
        self.solve_time = 0.0

    def values(self, alpha: float, data_w: np.ndarray, beta: float, ridge: float, gamma: float = 1.0) -> np.ndarray:
        """CSC data of AᵀA for the given weights (same pattern whatever the values)."""
        g2 = np.array([1.0, 1.0, 1.0, gamma * gamma])
        w = np.asarray(data_w, np.float64).copy()
        if len(self.lm):
            np.add.at(w, self.lm, beta * beta)
        blk = w[:, None] * self.outer
        blk[:, self.diag_pos] += (alpha * alpha) * self.deg[:, None] * g2[None, :] + ridge
        # block and edge slots are disjoint and cover the pattern: plain assignment, no zero dropped
        data = np.empty(self.pattern.nnz)
        data[self.blk_slots.ravel()] = blk.ravel()
        data[self.edge_slots.ravel()] = (-(alpha * alpha) * (self.edge_stiff ** 2)[:, None] * g2[None, :]).ravel()
        return data

    def rhs(self, data_w, targets, beta, lm_targets, ridge, x_prev) -> np.ndarray:
        """AᵀB as (4n, 3)."""
        r = (np.asarray(data_w, np.float64)[:, None, None] * self.vh[:, :, None]
             * np.asarray(targets, np.float64)[:, None, :])
        if len(self.lm):
            np.add.at(r, self.lm, beta * beta * self.vh[self.lm, :, None] * np.asarray(lm_targets)[:, None, :])
        r += ridge * x_prev
        return r.reshape(4 * self.n, 3)

    def solve(self, alpha, data_w, targets, beta, lm_targets, ridge, x_prev, gamma: float = 1.0) -> np.ndarray:
        """One exact solve; returns X (n, 4, 3)."""
        t0 = time.perf_counter()
        self.solver.factor(self.values(alpha, data_w, beta, ridge, gamma))
        t1 = time.perf_counter()
        x = self.solver.solve(self.rhs(data_w, targets, beta, lm_targets, ridge, x_prev))
        self.factor_time += t1 - t0
        self.solve_time += time.perf_counter() - t1
        return x.reshape(self.n, 4, 3)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Deformed vertices (n, 3) = v̂_iᵀ X_i."""
        return np.einsum("ik,ikd->id", self.vh, x)

    def identity(self) -> np.ndarray:
        x = np.zeros((self.n, 4, 3))
        x[:, 0, 0] = x[:, 1, 1] = x[:, 2, 2] = 1.0
        return x


@dataclasses.dataclass
class NICPResult:
    """Deformed template, the last correspondences and a per-iteration log."""

    vertices: np.ndarray
    transforms: np.ndarray
    correspondences: Correspondences
    log: list
    solver: str
    factor_time: float
    query_time: float
    iterations: int


def nicp(template_vertices, template_triangles, target: Target, *, schedule: NICPSchedule = NICPSchedule(),
         stiffness=None, data_weight=None, landmark_vertices=None, landmark_targets=None,
         backend: str = "auto", system: NICPSystem | None = None) -> NICPResult:
    """Register ``template_vertices`` onto ``target`` (see module docstring).

    Args:
        template_vertices: (n, 3) initial template (already aligned, e.g. a 3DMM fit), same frame as target.
        template_triangles: (m, 3) outward-wound triangles.
        target: :class:`Target`.
        stiffness: (n,) per-vertex stiffness multipliers. data_weight: (n,) data-term weights.
        landmark_vertices / landmark_targets: (L,) indices and (L, 3) points (kept with weight β).
        system: a prebuilt :class:`NICPSystem` for this template (reused across scans).
    Returns:
        :class:`NICPResult`; never raises on an empty correspondence set (the ridge holds X).
    """
    tri = np.asarray(template_triangles, np.int64)
    if system is None:
        system = NICPSystem(template_vertices, tri, stiffness, landmark_vertices, backend)
    lm_t = (np.zeros((0, 3)) if landmark_targets is None else np.asarray(landmark_targets, np.float64))
    if len(lm_t) != len(system.lm):
        raise ValueError(f"landmark_targets: expected {len(system.lm)} points, got {len(lm_t)}")
    x = system.identity()
    cur = system.apply(x)
    log = []
    query_time = 0.0
    iters = 0
    corr = None
    for step, (alpha, beta, cap) in enumerate(zip(schedule.alphas, schedule.betas, schedule.caps)):
        for inner in range(schedule.max_inner):
            t0 = time.perf_counter()
            normals = vertex_normals(cur, tri)
            corr = find_correspondences(target, cur, normals, cap, schedule.min_cos, data_weight)
            query_time += time.perf_counter() - t0
            x_new = system.solve(alpha, corr.weight, corr.points, beta, lm_t, schedule.ridge, x, schedule.gamma)
            delta = float(np.linalg.norm(x_new - x) / np.sqrt(12 * system.n))
            x = x_new
            cur = system.apply(x)
            iters += 1
            log.append({"step": step, "inner": inner, "alpha": float(alpha), "beta": float(beta),
                        "valid": float(np.mean(corr.weight > 0)), "delta": delta})
            if delta < schedule.tol:
                break
    t0 = time.perf_counter()
    corr = find_correspondences(target, cur, vertex_normals(cur, tri), schedule.caps[-1], schedule.min_cos)
    query_time += time.perf_counter() - t0
    return NICPResult(cur, x, corr, log, system.solver.backend, system.factor_time, query_time, iters)


def flipped_faces(reference_vertices, deformed_vertices, triangles) -> np.ndarray:
    """(m,) bool: triangles whose normal turned by more than 90° from the reference mesh to the deformed one."""
    a = face_normals(reference_vertices, triangles)
    b = face_normals(deformed_vertices, triangles)
    return np.einsum("ij,ij->i", a, b) < 0
