"""Synthetic scans with known ground truth, for tests, the demo and the benchmark.

:func:`make_synthetic_scan` builds a scan the registration has to work for: a face of the model
(random identity and expression) plus a smooth deformation the model cannot express (Gaussian
bumps along the normal), cut to the face region, resampled (one midpoint subdivision, so scan
vertices are not template vertices), noised along the normal, with a hole in one cheek, moved by
a random similarity into a chosen unit, and given noisy landmarks. It also returns where every
template vertex truly lies on that scan, so the *correspondence* error (not only the surface
distance) of a registration can be measured.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from face3d_data.registration.landmarks import UNIT_MM, apply_similarity
from face3d_data.registration.regions import region_classes
from face3d_data.registration.surface import orient_outward, subdivide, vertex_normals


@dataclasses.dataclass
class SyntheticScan:
    """A synthetic scan and its ground truth.

    Attributes:
        vertices (V, 3) float64, triangles (F, 3) int32, colors (V, 3) float32 in [0, 1]: the scan,
            in its own frame and ``unit``.
        landmarks: (68, 3) noisy iBUG landmarks, scan frame and unit.
        truth: (N, 3) true position of every template vertex, scan frame and unit.
        on_scan: (N,) bool template vertices whose true position is covered by the scan (not in the
            hole, inside the scanned region, away from its border).
        in_hole: (N,) bool template vertices over the hole.
        unit: the scan's unit ("m", "cm", "mm", "um"); mm_per_unit: its size in mm.
        similarity: (s, R, t) from the model-space face in mm to the scan frame (in mm).
        shape_para, exp_para: the model coefficients used; bump_mm: (N,) the extra deformation's size.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray
    landmarks: np.ndarray
    truth: np.ndarray
    on_scan: np.ndarray
    in_hole: np.ndarray
    unit: str
    mm_per_unit: float
    similarity: tuple
    shape_para: np.ndarray
    exp_para: np.ndarray
    bump_mm: np.ndarray


def model_mm_per_unit(model) -> float:
    """mm per model unit, from the mean's outer-eye-corner distance (~95 mm) and the nearest unit."""
    v = model.mean.astype(np.float64)
    eye = float(np.linalg.norm(v[model.landmarks[36]] - v[model.landmarks[45]]))
    units = {**UNIT_MM, "mm": 1.0}
    best = min(units.values(), key=lambda f: abs(np.log(eye * f / 95.0)))
    return float(best)


def _random_rotation(rng, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    ang = np.deg2rad(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(ang) * k + (1 - np.cos(ang)) * k @ k


def make_synthetic_scan(model, seed: int = 0, *, unit: str = "m", noise_mm: float = 0.2,
                        landmark_noise_mm: float = 1.0, bump_mm: float = 4.0, hole_radius_mm: float = 12.0,
                        max_rotation_deg: float = 25.0, shape_scale: float = 0.8, exp_scale: float = 0.5,
                        subdivisions: int = 1) -> SyntheticScan:
    """A synthetic scan of ``model`` with known correspondences (see module docstring).

    Args:
        model: a :class:`face3d_data.morphable.MorphableModel` with triangles (the embedded model works).
        seed: everything random derives from it.
        unit: the scan's unit; noise_mm / landmark_noise_mm: Gaussian std of the surface noise (along
            the normal) and of the landmarks; bump_mm: amplitude of the smooth extra deformation;
            hole_radius_mm: radius of the cheek hole (0 = none).
    """
    rng = np.random.default_rng(seed)
    if model.triangles is None:
        raise ValueError("model: has no triangles")
    mm = model_mm_per_unit(model)
    tri, _ = orient_outward(model.mean, model.triangles)
    shape = np.clip(rng.normal(size=model.n_shape), -2.5, 2.5) * model.shape_std * shape_scale
    exp = np.clip(rng.normal(size=model.n_exp), -2.5, 2.5) * model.exp_std * exp_scale
    v = model.vertices(shape, exp).astype(np.float64) * mm
    lm_idx = model.landmarks
    normals = vertex_normals(v, tri)
    # smooth deformation outside the model space: bumps at forehead, one cheek, chin
    lm = v[lm_idx]
    centres = [lm[27] + 0.9 * (lm[27] - lm[33]), 0.5 * (lm[13] + lm[35]), lm[8] + 0.4 * (lm[57] - lm[8])]
    amp = bump_mm * np.array([1.0, -0.8, 0.7]) * rng.uniform(0.8, 1.2, 3)
    sig = np.array([22.0, 16.0, 14.0]) * rng.uniform(0.9, 1.1, 3)
    bump = np.zeros(len(v))
    for c, a, s in zip(centres, amp, sig):
        bump += a * np.exp(-np.sum((v - c) ** 2, 1) / (2 * s * s))
    truth_mm = v + bump[:, None] * normals
    # scanned region: the face (classes cheeks + features), no ears/neck
    classes = region_classes(model)
    face = classes >= 1
    keep_tri = tri[np.all(face[tri], axis=1)]
    sv, st = truth_mm, keep_tri
    for _ in range(int(subdivisions)):
        sv, st = subdivide(sv, st)
    used = np.unique(st)
    remap = -np.ones(len(sv), np.int64)
    remap[used] = np.arange(len(used))
    sv, st = sv[used], remap[st]
    # the hole: one cheek, between the jaw and the nose
    mid = 0.5 * (truth_mm[lm_idx[3]] + truth_mm[lm_idx[31]])
    hole_centre = truth_mm[np.argmin(np.linalg.norm(truth_mm - mid, axis=1))]  # on the surface
    in_hole = np.zeros(model.n_vertices, bool)
    if hole_radius_mm > 0:
        cen = sv[st].mean(axis=1)
        st = st[np.linalg.norm(cen - hole_centre, axis=1) > hole_radius_mm]
        used = np.unique(st)
        remap = -np.ones(len(sv), np.int64)
        remap[used] = np.arange(len(used))
        sv, st = sv[used], remap[st]
        in_hole = np.linalg.norm(truth_mm - hole_centre, axis=1) < hole_radius_mm - 3.0
    # noise along the scan normal
    sn = vertex_normals(sv, st)
    sv = sv + rng.normal(scale=noise_mm, size=len(sv))[:, None] * sn
    # colours: the model's mean albedo, interpolated like the geometry
    colors = None
    if model.tex_mean is not None:
        tv, tt, tc = truth_mm, keep_tri, model.tex_mean.astype(np.float64) / 255.0
        for _ in range(int(subdivisions)):
            tv, tt, tc = subdivide(tv, tt, tc)
        from scipy.spatial import cKDTree

        _, nearest = cKDTree(tv).query(sv)
        colors = np.clip(tc[nearest], 0, 1).astype(np.float32)
    # template vertices covered by the scan: on the face, not in (or at the rim of) the hole
    interior = face.copy()
    border_v = np.zeros(model.n_vertices, bool)
    ring = np.unique(tri[np.any(face[tri], axis=1) & ~np.all(face[tri], axis=1)])
    border_v[ring] = True
    on_scan = interior & ~border_v & (np.linalg.norm(truth_mm - hole_centre, axis=1) > hole_radius_mm + 3.0)
    # similarity into the scan frame
    R = _random_rotation(rng, max_rotation_deg)
    t_mm = rng.uniform(-300, 300, 3)
    to_unit = 1.0 / UNIT_MM[unit]
    def move(p):
        return apply_similarity(p, 1.0, R, t_mm) * to_unit

    lm_noisy = truth_mm[lm_idx] + rng.normal(scale=landmark_noise_mm, size=(68, 3))
    return SyntheticScan(vertices=move(sv), triangles=st.astype(np.int32),
                         colors=colors if colors is not None else np.full((len(sv), 3), 0.7, np.float32),
                         landmarks=move(lm_noisy), truth=move(truth_mm), on_scan=on_scan, in_hole=in_hole,
                         unit=unit, mm_per_unit=UNIT_MM[unit], similarity=(1.0, R, t_mm),
                         shape_para=shape, exp_para=exp, bump_mm=bump)


def subdivided_model(model, levels: int = 1):
    """``model`` with each triangle split into 4 (``levels`` times): a denser template with the same shape space.

    New vertices sit at edge midpoints; their mean, bases, texture and UVs are the endpoints' averages,
    their region the lower code of the two (so features do not grow). Landmarks and contour lines keep
    their vertices (original vertices keep their indices). Used to benchmark BFM-sized (~53k) templates.
    """
    from face3d_data.morphable import MorphableModel
    from face3d_data.registration.surface import unique_edges

    m = model
    for _ in range(int(levels)):
        n = m.n_vertices
        parts = [m.mean, m.shape_basis.reshape(n, -1), m.exp_basis.reshape(n, -1)]
        if m.tex_mean is not None:
            parts += [m.tex_mean, m.tex_basis.reshape(n, -1)]
        if m.uv is not None:
            parts.append(m.uv)
        widths = [p.shape[1] for p in parts]
        attrs = np.concatenate([np.asarray(p, np.float64) for p in parts], 1)
        _, tri, new = subdivide(m.mean, m.triangles, attrs)
        cols = np.split(new, np.cumsum(widths)[:-1], axis=1)
        nn = len(new)
        edges = unique_edges(m.triangles)
        regions = None
        if m.regions is not None:
            regions = np.concatenate([m.regions, np.minimum(m.regions[edges[:, 0]], m.regions[edges[:, 1]])])
        k = iter(cols)
        mean, sb, eb = next(k), next(k), next(k)
        kw = {}
        if m.tex_mean is not None:
            kw.update(tex_mean=next(k), tex_basis=next(k).reshape(nn, 3, -1), tex_std=m.tex_std)
        if m.uv is not None:
            kw["uv"] = next(k)
        m = MorphableModel(mean, sb.reshape(nn, 3, -1), m.shape_std, eb.reshape(nn, 3, -1), m.exp_std,
                           triangles=tri, landmarks=m.landmarks, regions=regions, contour_lines=m.contour_lines,
                           convention=m.convention, name=f"{m.name} (subdivided)", **kw)
    return m


def write_synthetic_scans(folder: str, count: int = 1, model=None, seed: int = 0, unit: str = "mm") -> list[str]:
    """Write ``count`` synthetic scans as ``<folder>/synthetic_<i>.ply`` (vertex colours) with
    ``synthetic_<i>_landmarks.npy`` (68 iBUG points) beside them: an input folder for ``register_scans``.

    Existing files are kept (so a rerun resumes). Returns the scan paths.
    """
    import os

    from face3d_data.io import save_npy, write_mesh

    if model is None:
        from face3d_data.morphable import load_model

        model = load_model("builtin")
    paths = []
    for i in range(int(count)):
        stem = os.path.join(folder, f"synthetic_{i:03d}")
        if not (os.path.exists(stem + ".ply") and os.path.exists(stem + "_landmarks.npy")):
            scan = make_synthetic_scan(model, seed=seed + i, unit=unit)
            write_mesh(stem + ".ply", scan.vertices, scan.triangles, colors=scan.colors)
            save_npy(stem + "_landmarks.npy", scan.landmarks)
        paths.append(stem + ".ply")
    return paths
