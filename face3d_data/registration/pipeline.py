"""One scan onto the model topology: landmarks -> similarity -> 3DMM fit -> NICP -> outputs + QA.

:func:`register_scan` is the whole registration of one scan (the ``register_scans`` stage calls it
per scan). Frames and units:

- the scan's own frame and unit on input and for ``vertices_scan`` (so the result overlays the
  scan in any viewer);
- mm in the scan frame for every internal step and every reported figure;
- the model frame and unit for ``vertices_model`` (the similarity of the fit removed: pose-free);
- NICP runs with the fitted template centred and scaled to a bounding-box diagonal of 1.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from face3d_data.registration import qa as qa_mod
from face3d_data.registration.fit3dmm import fit_model
from face3d_data.registration.landmarks import (
    MIRROR_68,
    UNIT_MM,
    apply_similarity,
    detect_unit,
    invert_similarity,
    landmark_order,
    similarity,
)
from face3d_data.registration.nicp import (
    NICPSchedule,
    Target,
    find_correspondences,
    nicp,
)
from face3d_data.registration.regions import (
    region_classes,
    vertex_stiffness,
    vertex_weights,
)
from face3d_data.registration.surface import (
    orient_outward,
    unique_edges,
    vertex_normals,
)


@dataclasses.dataclass(frozen=True)
class RegistrationOptions:
    """Settings of :func:`register_scan` (distances in mm)."""

    fit_model: bool = True
    fit_iterations: int = 6
    fit_prior: float = 0.05
    schedule: NICPSchedule = dataclasses.field(default_factory=NICPSchedule)
    solver: str = "auto"
    closest: str = "auto"
    use_jaw_landmarks: bool = False
    active_ring: int = 3
    valid_distance_mm: float = 3.0
    confidence_sigma_mm: float = 1.0
    thresholds: qa_mod.Thresholds = dataclasses.field(default_factory=qa_mod.Thresholds)


@dataclasses.dataclass
class Template:
    """What a model contributes to every registration (computed once per model)."""

    model: object
    triangles: np.ndarray       # outward-wound
    flipped_winding: bool
    classes: np.ndarray         # (N,) 0 rest / 1 cheeks / 2 features
    weights: np.ndarray         # (N,) training weight per class
    stiffness: np.ndarray       # (N,) NICP stiffness multiplier
    mm_per_unit: float

    def active_region(self, ring: int) -> np.ndarray:
        """(N,) bool: the face (cheeks + features) grown by ``ring`` edge rings; all vertices if ``ring < 0``."""
        if ring < 0:
            return np.ones(len(self.classes), bool)
        active = self.classes >= 1
        edges = unique_edges(self.triangles)
        for _ in range(int(ring)):
            grow = active.copy()
            grow[edges[active[edges[:, 0]], 1]] = True
            grow[edges[active[edges[:, 1]], 0]] = True
            active = grow
        return active

    def submesh(self, active: np.ndarray):
        """(triangles of the active vertices reindexed, (N,) index of each vertex in the submesh or -1)."""
        index = -np.ones(len(active), np.int64)
        index[active] = np.arange(int(active.sum()))
        keep = np.all(active[self.triangles], axis=1)
        return index[self.triangles[keep]].astype(np.int32), index

    @classmethod
    def from_model(cls, model) -> Template:
        from face3d_data.registration.synthetic import model_mm_per_unit

        if model.triangles is None:
            raise ValueError(f"model {model.name!r}: registration needs triangles")
        tri, flipped = orient_outward(model.mean, model.triangles)
        classes = region_classes(model)
        return cls(model, tri, flipped, classes, vertex_weights(classes), vertex_stiffness(classes),
                   model_mm_per_unit(model))


@dataclasses.dataclass
class Registration:
    """Per-vertex outputs and the QA record of one scan (see module docstring for frames)."""

    vertices_scan: np.ndarray   # (N, 3) float32 scan frame and unit
    vertices_model: np.ndarray  # (N, 3) float32 model frame and unit
    valid: np.ndarray           # (N,) bool
    distance_mm: np.ndarray     # (N,) float32 to the closest scan point (inf where no point)
    confidence: np.ndarray      # (N,) float32 valid · exp(−d² / 2σ²)
    weight: np.ndarray          # (N,) float32 region weight · confidence
    colors: np.ndarray | None   # (N, 3) float32 [0, 1] sampled from the scan
    classes: np.ndarray         # (N,) uint8
    similarity: dict            # model -> scan (mm): s, R, t
    shape_para: np.ndarray
    exp_para: np.ndarray
    unit: str
    qa: dict
    status: str


def harmonic_extension(triangles, known: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values at the unknown vertices that make them the average of their neighbours (uniform
    graph Laplacian, Dirichlet data ``values`` at the ``known`` vertices): a smooth continuation.

    Args:
        triangles: (M, 3); known: (N,) bool; values: (K, C) at the known vertices, in order.
    Returns:
        (N - K, C) at the unknown vertices, in order (a tiny ridge gives 0 where nothing is known).
    """
    import scipy.sparse as sp
    from scipy.sparse.linalg import splu

    n = len(known)
    e = unique_edges(triangles)
    adj = sp.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])),
                        shape=(n, n)).tocsr()
    lap = (sp.diags(np.asarray(adj.sum(axis=1)).ravel()) - adj).tocsr()
    unk = np.flatnonzero(~known)
    kn = np.flatnonzero(known)
    a = lap[unk][:, unk].tocsc() + sp.identity(len(unk), format="csc") * 1e-9
    b = -(lap[unk][:, kn] @ np.asarray(values, np.float64))
    return splu(a).solve(b)


def _sample_colors(scan_colors, scan_uv, texture, scan_tri, tri, bary):
    corners = scan_tri[tri]
    if texture is not None and scan_uv is not None:
        uv = np.einsum("qk,qkd->qd", bary, scan_uv[corners].astype(np.float64))
        h, w = texture.shape[:2]
        x = np.clip(uv[:, 0] * (w - 1), 0, w - 1)
        y = np.clip((1.0 - uv[:, 1]) * (h - 1), 0, h - 1)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        tex = texture.astype(np.float64) / 255.0
        c = (tex[y0, x0] * (1 - fx) * (1 - fy) + tex[y0, x1] * fx * (1 - fy)
             + tex[y1, x0] * (1 - fx) * fy + tex[y1, x1] * fx * fy)
        return c[:, :3].astype(np.float32)
    if scan_colors is not None:
        return np.einsum("qk,qkd->qd", bary, np.asarray(scan_colors, np.float64)[corners]).astype(np.float32)
    return None


def register_scan(template: Template, scan_vertices, scan_triangles, landmark_points, landmark_ibug, *,
                  unit: str = "auto", scan_colors=None, scan_uv=None, texture=None,
                  options: RegistrationOptions = RegistrationOptions()) -> Registration:
    """Register one scan (see module docstring).

    Args:
        template: :meth:`Template.from_model`.
        scan_vertices: (V, 3), scan_triangles: (F, 3): the scan in its frame and unit.
        landmark_points: (K, 3) scan landmarks (scan frame and unit); landmark_ibug: (K,) their iBUG
            indices (-1 = unused).
        unit: ``auto`` (from the landmarks) or one of ``m cm mm um``.
        scan_colors: optional (V, 3) in [0, 1]; scan_uv (V, 2) + texture (H, W, 3) uint8: optional texture.
    Returns:
        :class:`Registration`. Bad data gives ``status = "failed_qa"`` with reasons, not an exception.

    Raises:
        ValueError: unusable input (no plausible unit, fewer than 4 usable landmarks).
    """
    t_start = time.perf_counter()
    model = template.model
    sv = np.asarray(scan_vertices, np.float64)
    st = np.asarray(scan_triangles, np.int64)
    lm_pts = np.asarray(landmark_points, np.float64)
    ibug = np.asarray(landmark_ibug, np.int64)
    if len(lm_pts) != len(ibug):
        raise ValueError(f"landmarks: {len(lm_pts)} points but {len(ibug)} iBUG indices")
    keep = ibug >= 0
    lm_pts, ibug = lm_pts[keep], ibug[keep]
    info: dict = {}
    # units
    mean_mm = model.mean.astype(np.float64) * template.mm_per_unit
    if unit == "auto":
        unit, face_mm = detect_unit({int(k): p for k, p in zip(ibug, lm_pts)},
                                   mean_mm[model.landmarks[ibug]], ibug)
        info["unit_detected"] = unit
        info["eye_distance_mm"] = face_mm
    elif unit not in UNIT_MM:
        raise ValueError(f"unit: expected auto or one of {tuple(UNIT_MM)}, got {unit!r}")
    f = UNIT_MM[unit]
    sv_mm, lm_mm = sv * f, lm_pts * f
    # landmark order (a mirrored order is repaired, an unknown one fails QA)
    order = landmark_order(lm_mm, mean_mm[model.landmarks[ibug]], ibug)
    info["landmark_order"] = order
    if order["order"] == "mirrored":
        ibug = MIRROR_68[ibug]
    use = (ibug >= 17) | bool(options.use_jaw_landmarks)
    if use.sum() < 4:
        raise ValueError(f"landmarks: {int(use.sum())} usable landmarks, need at least 4")
    lm_v = model.landmarks[ibug[use]]
    lm_t = lm_mm[use]
    s, R, t = similarity(model.mean[lm_v].astype(np.float64), lm_t)
    init_mm = apply_similarity(model.mean, s, R, t)
    tri = template.triangles
    # normalised frame for NICP: centred on the aligned template, bbox diagonal 1
    c0 = init_mm.mean(axis=0)
    D = float(np.linalg.norm(init_mm.max(0) - init_mm.min(0)))

    def norm(p):
        return (np.asarray(p, np.float64) - c0) / D

    target = Target.build(norm(sv_mm), st, options.closest)
    # orientation of the scan relative to the (outward) template: check once, flip if needed
    probe = find_correspondences(target, norm(init_mm), vertex_normals(norm(init_mm), tri), 10.0 / D, -2.0)
    near = probe.distance < 10.0 / D
    cos_med = float(np.median(probe.cos[near])) if near.any() else 1.0
    if cos_med < 0:
        target = target.flipped()
    info["scan_normals_flipped"] = bool(cos_med < 0)
    info["template_winding_flipped"] = bool(template.flipped_winding)
    # stage B: 3DMM fit
    s_n, t_n = s / D, (t - c0) / D                  # model -> normalised frame
    shape_para, exp_para = np.zeros(model.n_shape), np.zeros(model.n_exp)
    t_fit = time.perf_counter()
    if options.fit_model and model.n_shape + model.n_exp > 0:
        face = template.classes >= 1
        fit = fit_model(model, tri, target, lm_v, norm(lm_t), s_n, R, t_n, vertex_mask=face,
                        iterations=options.fit_iterations,
                        caps_mm=tuple(c / D for c in (20.0, 10.0, 6.0, 4.0)), prior=options.fit_prior / D ** 2)
        start = fit.vertices
        s_n, R, t_n = fit.s, fit.R, fit.t
        shape_para, exp_para = fit.shape_para, fit.exp_para
        info["fit_rms_mm"] = fit.rms_mm * D
        info["fit_valid_fraction"] = fit.valid_fraction
    else:
        start = norm(init_mm)
    t_fit = time.perf_counter() - t_fit
    # stage C: NICP on the active region, the rest follows by harmonic extension of the displacement
    sched = options.schedule
    active = template.active_region(options.active_ring)
    sub_tri, sub_of = template.submesh(active)
    lm_keep = active[lm_v]
    res = nicp(start[active], sub_tri, target, schedule=sched, stiffness=template.stiffness[active],
               landmark_vertices=sub_of[lm_v[lm_keep]], landmark_targets=norm(lm_t)[lm_keep],
               backend=options.solver)
    registered = start.copy()
    registered[active] = res.vertices
    if not np.all(active):
        registered[~active] = start[~active] + harmonic_extension(
            tri, active, res.vertices - start[active])
    # final correspondences and per-vertex outputs
    final = find_correspondences(target, registered, vertex_normals(registered, tri),
                                 options.valid_distance_mm / D, sched.min_cos)
    valid = final.weight > 0
    dist_mm = (final.distance * D).astype(np.float32)
    sigma = options.confidence_sigma_mm
    conf = (valid * np.exp(-dist_mm.astype(np.float64) ** 2 / (2 * sigma ** 2))).astype(np.float32)
    weight = (template.weights * conf).astype(np.float32)
    reg_mm = registered * D + c0
    s_mm, t_mm = s_n * D, t_n * D + c0              # model -> scan mm
    vertices_model = invert_similarity(reg_mm, s_mm, R, t_mm)
    _, ctri, cbary, _ = target.closest.query(registered)
    colors = _sample_colors(scan_colors, scan_uv, texture, st, ctri, cbary)
    # QA
    record = qa_mod.qa_record(
        template=template, scan_mm=sv_mm, scan_triangles=st, lm_mm=lm_mm, ibug=ibug,
        init_mm=init_mm, start_mm=start * D + c0, registered_mm=reg_mm, valid=valid,
        closest=options.closest, thresholds=options.thresholds)
    record.update({k: v for k, v in info.items()})
    record["unit"] = unit
    record["solver"] = res.solver
    record["iterations"] = res.iterations
    record["nicp_vertices"] = int(active.sum())
    record["timing_s"] = {"total": time.perf_counter() - t_start, "fit": t_fit,
                          "nicp_factor_solve": res.factor_time, "nicp_closest": res.query_time}
    record["nicp_log"] = res.log
    if order["order"] == "unknown":
        record["reasons"].append(f"landmark order not recognised (residual {order['residual']:.2f} of the spread)")
        record["status"] = "failed_qa"
    return Registration(
        vertices_scan=(reg_mm / f).astype(np.float32), vertices_model=vertices_model.astype(np.float32),
        valid=valid, distance_mm=dist_mm, confidence=conf, weight=weight, colors=colors,
        classes=template.classes, similarity={"s": s_mm, "R": R, "t": t_mm},
        shape_para=np.asarray(shape_para), exp_para=np.asarray(exp_para), unit=unit, qa=record,
        status=record["status"])
