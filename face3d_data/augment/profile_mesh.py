"""Image meshing for face profiling: turn a photo with a fitted 3DMM into a 2.5-D mesh.

The mesh covers the whole (enlarged) image and is triangulated in 2D (Delaunay) over four kinds
of points, all in the canonical frame of the *source* image (0-based, x right, y down, pixel
centres at integers; z = projected depth, larger = closer, in pixels as
:func:`face3d_data.w300lp.pose.project` gives it):

- ``FACE``: the fitted model's face-region vertices that are visible in the source, at their
  projected position and depth; the model's own triangles among them are kept (``surface``).
- ``CONTOUR``: points sampled evenly along the outer silhouette of the rendered face region,
  with the face's z-buffer depth there (the 3D contour of the face for this pose).
- ``ANCHOR``: rings around the face: the contour scaled about the projected face centre by each
  of ``ring_scales``. Their depth is estimated (:func:`anchor_depths`).
- ``BORDER``: points on the image border enlarged by ``border_margin`` x the image size, at one
  constant depth behind the face.

Anchor depths: an anchor that falls on the rest of the fitted mesh (neck, ears, scalp) takes that
surface's z-buffer depth ("on-mesh"); the others are solved by least squares so that depth varies
smoothly over the mesh edges (a discrete harmonic interpolation between the face, the on-mesh
anchors and the border). The outlier rule: walking outward along each ring "spoke" (contour point
-> ring 1 -> ring 2 ...), an on-mesh anchor whose depth differs from the previous accepted point
by more than ``max_depth_slope`` x their image distance, or lies in front of its contour point,
is treated as not on the mesh and re-solved; this keeps a neck that steps back from the jaw, or a
stray hit on the far side of the head, from tearing the mesh when it turns.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import Delaunay

from face3d_data.render import rasterize, vertex_visibility

#: Point kinds of an :class:`ImageMesh`.
FACE, CONTOUR, ANCHOR, BORDER = 0, 1, 2, 3

DEFAULT_RING_SCALES = (1.1, 1.2, 1.35, 1.55, 1.8)


@dataclass(frozen=True)
class MeshOptions:
    """How the image is meshed (see the module docstring).

    Attributes:
        contour_points: points sampled along the face silhouette.
        ring_scales: scale factors (> 1, increasing) of the anchor rings about the face centre.
        border_margin: the border box lies this fraction of max(H, W) outside the image.
        border_points: points per side of the border box.
        max_depth_slope: outlier rule for on-mesh anchors (depth change per pixel of distance).
        border_depth: depth of the border points below the mean contour depth, as a multiple of
            the face's depth extent (front-most face depth minus mean contour depth).
    """

    contour_points: int = 64
    ring_scales: tuple = DEFAULT_RING_SCALES
    border_margin: float = 0.25
    border_points: int = 8
    max_depth_slope: float = 1.5
    border_depth: float = 1.0

    def __post_init__(self):
        scales = tuple(float(s) for s in self.ring_scales)
        if not scales or any(s <= 1.0 for s in scales) or list(scales) != sorted(set(scales)):
            raise ValueError(f"ring_scales: expected increasing values > 1, got {self.ring_scales!r}")
        object.__setattr__(self, "ring_scales", scales)
        if int(self.contour_points) < 8:
            raise ValueError("contour_points: expected at least 8")
        if int(self.border_points) < 2:
            raise ValueError("border_points: expected at least 2")
        if not self.border_margin > 0:
            raise ValueError("border_margin: expected > 0")
        if not self.max_depth_slope > 0:
            raise ValueError("max_depth_slope: expected > 0")
        if not self.border_depth >= 0:
            raise ValueError("border_depth: expected >= 0")


@dataclass
class ImageMesh:
    """A triangulated image.

    Attributes:
        points: (M, 3) float64 source-frame canonical x, y and depth z.
        kind: (M,) int8 point kinds (:data:`FACE`, :data:`CONTOUR`, :data:`ANCHOR`, :data:`BORDER`).
        vertex: (M,) int64 model vertex of each FACE point, -1 for the others.
        ring: (M,) int16 ring number of each ANCHOR point (0 = innermost), -1 for the others.
        weight: (M,) float64 how rigidly each point follows the head: 1 on the face and contour,
            decreasing over the rings, 0 on the border.
        triangles: (T, 3) int32 Delaunay triangles over all points (non-degenerate).
        surface: (S, 3) int32 the model's own triangles among the FACE points (point indices).
        edges: (E, 2) int64 unique mesh edges.
        on_mesh: (M,) bool anchors whose depth came from the fitted mesh (after the outlier rule).
        rejected: number of on-mesh anchors the outlier rule re-solved.
        face_mask: (H, W) bool pixels of the rendered face region in the source.
        head_mask: (H, W) bool pixels of the whole rendered mesh in the source.
        centre: (3,) float64 source-frame projection of the face centre (pivot of the rotation).
        visible: (N,) bool model vertices visible in the source.
    """

    points: np.ndarray
    kind: np.ndarray
    vertex: np.ndarray
    ring: np.ndarray
    weight: np.ndarray
    triangles: np.ndarray
    surface: np.ndarray
    edges: np.ndarray
    on_mesh: np.ndarray
    rejected: int
    face_mask: np.ndarray
    head_mask: np.ndarray
    centre: np.ndarray
    visible: np.ndarray

    def render_layers(self) -> tuple[np.ndarray, np.ndarray]:
        """The triangles to z-buffer: (primary, fallback), each (K, 3) int32.

        Primary: the model's own face triangles plus every Delaunay triangle with a point off the
        face (the contour skirt, the rings, the border), so the face keeps its real topology (a
        clean silhouette when it turns) and the rest of the image is covered. Fallback: the
        Delaunay triangles among face points, drawn only where the primary layer leaves a pixel
        uncovered (gaps between the model's triangles and the silhouette).
        """
        on_face = np.all(self.kind[self.triangles] == FACE, axis=1)
        primary = np.concatenate([self.surface, self.triangles[~on_face]]).astype(np.int32)
        return primary, np.ascontiguousarray(self.triangles[on_face], dtype=np.int32)


class MeshError(ValueError):
    """The fitted face cannot be meshed (off the image, too small, degenerate)."""


def face_vertex_mask(model) -> np.ndarray:
    """(N,) bool: the model's face region (every region but ``neck``), or all vertices."""
    if model.regions is None:
        return np.ones(model.n_vertices, bool)
    from face3d_data.morphable.model import REGIONS

    face = model.regions != REGIONS["neck"]
    return face if face.any() else np.ones(model.n_vertices, bool)


def _outer_contour(mask: np.ndarray, count: int) -> np.ndarray:
    """(count, 2) float64 points evenly spaced (by arc length) on the largest outer boundary."""
    found, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not found:
        raise MeshError("the face covers no pixel of the image")
    curve = max(found, key=cv2.contourArea)[:, 0, :].astype(np.float64)
    closed = np.vstack([curve, curve[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0:
        raise MeshError("the face silhouette is degenerate")
    at = np.arange(count) * arc[-1] / count
    idx = np.clip(np.searchsorted(arc, at, side="right") - 1, 0, len(curve) - 1)
    return curve[idx]  # boundary pixels themselves (inside the mask, so their depth is known)


def _border_box(h: int, w: int, margin: float, per_side: int) -> np.ndarray:
    m = margin * max(h, w)
    x0, x1, y0, y1 = -m, w - 1 + m, -m, h - 1 + m
    t = np.linspace(0.0, 1.0, per_side, endpoint=False)
    top = np.stack([x0 + t * (x1 - x0), np.full_like(t, y0)], 1)
    right = np.stack([np.full_like(t, x1), y0 + t * (y1 - y0)], 1)
    bottom = np.stack([x1 - t * (x1 - x0), np.full_like(t, y1)], 1)
    left = np.stack([np.full_like(t, x0), y1 - t * (y1 - y0)], 1)
    return np.concatenate([top, right, bottom, left])


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """(E, 2) int64 unique undirected edges of (T, 3) triangles (smaller index first)."""
    t = np.asarray(triangles, np.int64)
    if t.size == 0:
        return np.zeros((0, 2), np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e.sort(axis=1)
    m = int(t.max()) + 1
    key = np.unique(e[:, 0] * m + e[:, 1])     # one int64 per edge: sorted like (i, j) rows
    return np.stack([key // m, key % m], axis=1)


class EdgeLeastSquares:
    """Sparse least squares over mesh edges with some entries fixed (factorised once).

    Solves for the unknown entries of ``v`` the minimum of Σ over edges ``(i, j)`` of
    ‖(v_i − v_j) − d_ij‖², the ``known`` (M,) bool entries fixed. Only edges touching an unknown
    matter; unknowns with no edge keep their given values.

    Args:
        edges: (E, 2) mesh edges; known: (M,) bool.
    """

    def __init__(self, edges: np.ndarray, known: np.ndarray):
        edges = np.asarray(edges, np.int64).reshape(-1, 2)
        self.known = np.asarray(known, bool)
        m = len(self.known)
        self.unknown = np.nonzero(~self.known)[0]
        self.used = np.nonzero(~(self.known[edges[:, 0]] & self.known[edges[:, 1]]))[0]
        e = edges[self.used]
        n_e = len(e)
        inc = sp.csr_matrix((np.tile([1.0, -1.0], n_e), (np.repeat(np.arange(n_e), 2), e.ravel())),
                            shape=(n_e, m))                  # (v_i - v_j) per edge
        self._g_u = inc[:, self.unknown].tocsc()
        self._g_k = inc[:, np.nonzero(self.known)[0]].tocsc()
        a = (self._g_u.T @ self._g_u).tocsc()
        self._isolated = np.asarray(abs(a).sum(axis=1)).ravel() == 0
        a = a + sp.diags(self._isolated.astype(np.float64))
        self._solve = spla.factorized(a.tocsc()) if self.unknown.size else None

    def solve(self, values: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
        """``values`` (M,) or (M, C) with the unknowns solved; ``offsets`` d: (E,) or (E, C)
        for every edge given to the constructor (default 0: a harmonic interpolation)."""
        v = np.array(values, dtype=np.float64, copy=True)
        flat = v.ndim == 1
        if flat:
            v = v[:, None]
        if self._solve is None:
            return v[:, 0] if flat else v
        rhs = -(self._g_k @ v[self.known])
        if offsets is not None:
            d = np.asarray(offsets, np.float64)[self.used]
            rhs = rhs + (d[:, None] if d.ndim == 1 else d)
        b = np.asarray(self._g_u.T @ rhs)
        b[self._isolated] = v[self.unknown[self._isolated]]
        for c in range(v.shape[1]):
            v[self.unknown, c] = self._solve(np.ascontiguousarray(b[:, c]))
        return v[:, 0] if flat else v


def harmonic_fill(values: np.ndarray, known: np.ndarray, edges: np.ndarray,
                  offsets: np.ndarray | None = None) -> np.ndarray:
    """One :class:`EdgeLeastSquares` solve: the unknown (``~known``) entries of ``values``
    (M,) or (M, C) minimising Σ ‖(v_i − v_j) − d_ij‖² over ``edges``; returns a float64 copy."""
    return EdgeLeastSquares(edges, known).solve(values, offsets)


def anchor_depths(points: np.ndarray, kind: np.ndarray, ring: np.ndarray, spoke: np.ndarray,
                  surface_depth: np.ndarray, edges: np.ndarray, max_slope: float):
    """Depths of the ANCHOR points (see the module docstring), in place on a copy of ``points``.

    Args:
        points: (M, 3) source positions; z already set for FACE, CONTOUR and BORDER points.
        kind, ring: as in :class:`ImageMesh`; spoke: (M,) contour index of each anchor, -1 else.
        surface_depth: (M,) the fitted mesh's z-buffer depth under each anchor, -inf off the mesh.
        edges: (E, 2) mesh edges; max_slope: the outlier rule's bound.
    Returns:
        (points with anchor z filled, on_mesh (M,) bool, number of rejected on-mesh anchors).
    """
    p = np.array(points, dtype=np.float64, copy=True)
    anchors = kind == ANCHOR
    on_mesh = anchors & np.isfinite(surface_depth)
    candidates = int(on_mesh.sum())
    contour_idx = np.nonzero(kind == CONTOUR)[0]
    # walk each spoke outward and keep on-mesh depths whose profile is plausible
    order = np.lexsort((ring, spoke))
    by_spoke: dict[int, list[int]] = {}
    for idx in order[anchors[order]]:
        by_spoke.setdefault(int(spoke[idx]), []).append(int(idx))
    for k, members in by_spoke.items():
        if k < 0:
            continue
        prev = contour_idx[k]
        z_contour = p[prev, 2]
        for idx in members:
            if not on_mesh[idx]:
                continue
            z = surface_depth[idx]
            dist = float(np.hypot(*(p[idx, :2] - p[prev, :2])))
            if z > z_contour + 1e-6 or abs(z - p[prev, 2]) > max_slope * max(dist, 1.0):
                on_mesh[idx] = False
                continue
            p[idx, 2] = z
            prev = idx
    known = ~anchors | on_mesh
    p[:, 2] = harmonic_fill(p[:, 2], known, edges)
    return p, on_mesh, candidates - int(on_mesh.sum())


def build_image_mesh(projected: np.ndarray, triangles: np.ndarray, face: np.ndarray,
                     image_hw, options: MeshOptions = MeshOptions(),
                     centre: np.ndarray | None = None) -> ImageMesh:
    """Mesh an image around a fitted face.

    Args:
        projected: (N, 3) the model's vertices projected into the source image (canonical frame,
            z larger = closer), e.g. :func:`face3d_data.w300lp.pose.project`.
        triangles: (T, 3) the model's triangles.
        face: (N,) bool face-region vertices (:func:`face_vertex_mask`).
        image_hw: (H, W) of the source image.
        options: :class:`MeshOptions`.
        centre: (3,) the pivot in the source frame; default the mean of the projected face region.
    Raises:
        MeshError: the face is not on the image (or too small to mesh).
    """
    h, w = (int(v) for v in image_hw)
    projected = np.asarray(projected, np.float64)
    tri = np.asarray(triangles, np.int64)
    face_tri = tri[np.all(face[tri], axis=1)]
    head = rasterize(projected, tri, h, w)
    face_raster = rasterize(projected, face_tri, h, w)
    face_mask = face_raster.mask
    if int(face_mask.sum()) < 16:
        raise MeshError(f"the face covers {int(face_mask.sum())} pixels of the image (at least 16 needed)")
    visible = vertex_visibility(projected, tri, h, w, raster=head)
    if centre is None:
        centre = projected[face].mean(axis=0)
    centre = np.asarray(centre, np.float64)

    # face points: visible face-region vertices inside the image
    cand = np.nonzero(visible & face)[0]
    if len(cand) < 3:
        raise MeshError("fewer than 3 face vertices are visible in the image")
    face_pts = projected[cand]

    contour_xy = _outer_contour(face_mask, int(options.contour_points))
    cx, cy = contour_xy[:, 0].astype(int), contour_xy[:, 1].astype(int)
    contour_pts = np.column_stack([contour_xy, face_raster.depth[cy, cx].astype(np.float64)])

    margin = options.border_margin * max(h, w)
    lo, hi = np.array([-margin, -margin]), np.array([w - 1 + margin, h - 1 + margin])
    inner_lo, inner_hi = lo + 0.5 * margin / max(options.border_points, 1), \
        hi - 0.5 * margin / max(options.border_points, 1)
    ring_xy, ring_id, spoke_id = [], [], []
    for r, s in enumerate(options.ring_scales):
        a = centre[:2] + s * (contour_xy - centre[:2])
        keep = np.all((a > inner_lo) & (a < inner_hi), axis=1)
        ring_xy.append(a[keep])
        ring_id.append(np.full(int(keep.sum()), r))
        spoke_id.append(np.nonzero(keep)[0])
    ring_xy = np.concatenate(ring_xy)
    ring_id = np.concatenate(ring_id)
    spoke_id = np.concatenate(spoke_id)
    border_xy = _border_box(h, w, options.border_margin, int(options.border_points))

    z_front = float(face_pts[:, 2].max())
    z_contour = float(contour_pts[:, 2].mean())
    z_border = z_contour - options.border_depth * max(z_front - z_contour, 1.0)

    n_f, n_c, n_a, n_b = len(face_pts), len(contour_pts), len(ring_xy), len(border_xy)
    points = np.zeros((n_f + n_c + n_a + n_b, 3))
    points[:n_f] = face_pts
    points[n_f:n_f + n_c] = contour_pts
    points[n_f + n_c:n_f + n_c + n_a, :2] = ring_xy
    points[n_f + n_c + n_a:, :2] = border_xy
    points[n_f + n_c + n_a:, 2] = z_border
    kind = np.repeat(np.array([FACE, CONTOUR, ANCHOR, BORDER], np.int8), [n_f, n_c, n_a, n_b])
    vertex = np.full(len(points), -1, np.int64)
    vertex[:n_f] = cand
    ring = np.full(len(points), -1, np.int16)
    ring[n_f + n_c:n_f + n_c + n_a] = ring_id
    spoke = np.full(len(points), -1, np.int64)
    spoke[n_f + n_c:n_f + n_c + n_a] = spoke_id

    # drop points that coincide in 2D (Delaunay would ignore one of them)
    _, unique = np.unique(np.round(points[:, :2], 6), axis=0, return_index=True)
    keep = np.zeros(len(points), bool)
    keep[unique] = True
    keep[n_f + n_c + n_a:] = True
    sel = np.nonzero(keep)[0]
    points, kind, vertex, ring, spoke = points[sel], kind[sel], vertex[sel], ring[sel], spoke[sel]
    # spoke ids refer to contour indices; contour points may have been dropped as duplicates
    contour_rank = np.full(n_c, -1, np.int64)
    kept_contour = sel[(sel >= n_f) & (sel < n_f + n_c)] - n_f
    contour_rank[kept_contour] = np.arange(len(kept_contour))
    spoke = np.where(spoke >= 0, contour_rank[np.maximum(spoke, 0)], -1)
    point_of = np.full(len(projected), -1, np.int64)
    is_face = kind == FACE
    point_of[vertex[is_face]] = np.nonzero(is_face)[0]
    surface = point_of[tri]
    surface = surface[np.all(surface >= 0, axis=1)]
    dela = Delaunay(points[:, :2])
    tris = dela.simplices.astype(np.int64)
    a = points[tris[:, 1], :2] - points[tris[:, 0], :2]
    b = points[tris[:, 2], :2] - points[tris[:, 0], :2]
    area = 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
    tris = tris[np.abs(area) > 1e-9]
    edges = mesh_edges(tris)

    ax, ay = np.rint(points[:, 0]).astype(int), np.rint(points[:, 1]).astype(int)
    inside = (ax >= 0) & (ax < w) & (ay >= 0) & (ay < h)
    surf_depth = np.full(len(points), -np.inf)
    anchors = (kind == ANCHOR) & inside & (spoke >= 0)
    hit = anchors.copy()
    hit[anchors] = head.mask[ay[anchors], ax[anchors]] & ~face_mask[ay[anchors], ax[anchors]]
    surf_depth[hit] = head.depth[ay[hit], ax[hit]]
    points, on_mesh, rejected = anchor_depths(points, kind, ring, spoke, surf_depth, edges,
                                              options.max_depth_slope)
    n_r = len(options.ring_scales)
    weight = np.where(kind <= CONTOUR, 1.0, 0.0)
    weight[kind == ANCHOR] = 1.0 - (ring[kind == ANCHOR] + 1.0) / (n_r + 1.0)
    return ImageMesh(points=points, kind=kind, vertex=vertex, ring=ring, weight=weight,
                     triangles=tris.astype(np.int32),
                     surface=surface.astype(np.int32), edges=edges, on_mesh=on_mesh,
                     rejected=rejected, face_mask=face_mask, head_mask=head.mask, centre=centre,
                     visible=visible)
