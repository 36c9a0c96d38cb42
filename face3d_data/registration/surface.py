"""Triangle-mesh geometry for registration: normals, edges, boundaries, orientation, closest points.

All functions take ``vertices (N, 3) float`` and ``triangles (M, 3) int`` in any one frame and unit;
distances come back in that unit.

:class:`ClosestPoints` answers "nearest point on the surface" queries. With ``libigl`` installed it
uses its AABB tree (exact point-to-triangle distances); otherwise a SciPy ``cKDTree`` over the
triangle centroids proposes ``k`` candidate triangles per query and the exact point-to-triangle
distance picks the best (exact whenever the true closest triangle is among the ``k`` nearest
centroids, which holds for the evenly sampled meshes scans are). Both return the closest point,
its triangle and barycentric coordinates.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def face_normals(vertices: np.ndarray, triangles: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(M, 3) float64 triangle normals (right-hand rule over the corner order); area-weighted if not normalised."""
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles)
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    if normalize:
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
    return n


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(N, 3) float64 unit vertex normals: area-weighted sum of the adjacent face normals (0 if isolated)."""
    v = np.asarray(vertices, np.float64)
    fn = face_normals(v, triangles, normalize=False)
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, triangles[:, k], fn)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 0, out / np.maximum(norm, 1e-300), 0.0)


def unique_edges(triangles: np.ndarray) -> np.ndarray:
    """(E, 2) int64 undirected edges (i < j), each once, sorted."""
    t = np.asarray(triangles, np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e.sort(axis=1)
    return np.unique(e, axis=0)


def boundary_edges(triangles: np.ndarray) -> np.ndarray:
    """(B, 2) int64 edges used by exactly one triangle (i < j)."""
    t = np.asarray(triangles, np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    e.sort(axis=1)
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq[counts == 1]


def boundary_vertices(n_vertices: int, triangles: np.ndarray) -> np.ndarray:
    """(N,) bool: vertex lies on a boundary edge."""
    out = np.zeros(n_vertices, bool)
    out[boundary_edges(triangles).ravel()] = True
    return out


def border_corner_mask(triangles: np.ndarray) -> np.ndarray:
    """(M, 3) bool: entry (f, k) is True when the edge of triangle f opposite corner k is a boundary edge."""
    t = np.asarray(triangles, np.int64)
    n = int(t.max()) + 1 if t.size else 0
    be = boundary_edges(t)
    keys = set((be[:, 0] * n + be[:, 1]).tolist()) if len(be) else set()
    out = np.zeros(t.shape, bool)
    if not keys:
        return out
    bk = np.array(sorted(keys), np.int64)
    for k in range(3):
        a, b = t[:, (k + 1) % 3], t[:, (k + 2) % 3]
        key = np.minimum(a, b) * n + np.maximum(a, b)
        pos = np.searchsorted(bk, key)
        out[:, k] = bk[np.minimum(pos, len(bk) - 1)] == key
    return out


def outward_fraction(vertices: np.ndarray, triangles: np.ndarray) -> float:
    """Area-weighted fraction of the surface whose normal points away from the centroid."""
    v = np.asarray(vertices, np.float64)
    fn = face_normals(v, triangles, normalize=False)
    centre = v[np.unique(triangles)].mean(axis=0)
    fc = v[triangles].mean(axis=1)
    dots = np.einsum("ij,ij->i", fn, fc - centre)
    area = np.linalg.norm(fn, axis=1)
    return float(area[dots > 0].sum() / max(area.sum(), 1e-300))


def orient_outward(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, bool]:
    """Flip the winding of ``triangles`` when most of the surface faces the centroid.

    Returns:
        (triangles (M, 3) int32, flipped). Meant for a head/face template (a shell around its centroid).
    """
    t = np.asarray(triangles, np.int32)
    if outward_fraction(vertices, t) < 0.5:
        return np.ascontiguousarray(t[:, [0, 2, 1]]), True
    return t, False


def subdivide(vertices: np.ndarray, triangles: np.ndarray, attributes: np.ndarray | None = None):
    """One midpoint subdivision (each triangle -> 4). Returns (vertices, triangles[, attributes])."""
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles, np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    es = np.sort(e, axis=1)
    uniq, inv = np.unique(es, axis=0, return_inverse=True)
    mid = len(v) + inv.reshape(3, -1).T  # (M, 3): midpoints of edges 01, 12, 20
    nv = np.concatenate([v, 0.5 * (v[uniq[:, 0]] + v[uniq[:, 1]])])
    a, b, c = t.T
    m01, m12, m20 = mid.T
    nt = np.concatenate([np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
                         np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1)]).astype(np.int32)
    if attributes is None:
        return nv, nt
    att = np.asarray(attributes, np.float64)
    na = np.concatenate([att, 0.5 * (att[uniq[:, 0]] + att[uniq[:, 1]])])
    return nv, nt, na


def closest_on_triangles(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest point on triangles (a, b, c) to ``points`` (all (..., 3), broadcast).

    Returns:
        (closest (..., 3), barycentrics (..., 3), squared distance (...)). Region-based exact solution.
    """
    p = np.asarray(points, np.float64)
    ab, ac, ap = b - a, c - a, p - a
    d1 = np.einsum("...i,...i->...", ab, ap)
    d2 = np.einsum("...i,...i->...", ac, ap)
    bp = p - b
    d3 = np.einsum("...i,...i->...", ab, bp)
    d4 = np.einsum("...i,...i->...", ac, bp)
    cp = p - c
    d5 = np.einsum("...i,...i->...", ab, cp)
    d6 = np.einsum("...i,...i->...", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    shape = np.broadcast_shapes(d1.shape, va.shape)
    bary = np.zeros(shape + (3,))
    done = np.zeros(shape, bool)

    def assign(mask, u, v, w):
        nonlocal done
        m = mask & ~done
        bary[m, 0], bary[m, 1], bary[m, 2] = u[m], v[m], w[m]
        done |= m

    one, zero = np.ones(shape), np.zeros(shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        assign((d1 <= 0) & (d2 <= 0), one, zero, zero)
        assign((d3 >= 0) & (d4 <= d3), zero, one, zero)
        assign((d6 >= 0) & (d5 <= d6), zero, zero, one)
        t_ab = d1 / (d1 - d3)
        assign((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero)
        t_ac = d2 / (d2 - d6)
        assign((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        assign((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), zero, 1 - t_bc, t_bc)
        denom = 1.0 / (va + vb + vc)
        v_in, w_in = vb * denom, vc * denom
        assign(np.ones(shape, bool), 1 - v_in - w_in, v_in, w_in)
    bary = np.nan_to_num(bary, nan=1.0 / 3.0)
    closest = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:3] * c
    d = p - closest
    return closest, bary, np.einsum("...i,...i->...", d, d)


def barycentrics_of(points: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """(K, 3) barycentric coordinates of ``points`` that lie on (or are projected onto) triangles."""
    v0, v1, v2 = b - a, c - a, points - a
    d00 = np.einsum("ij,ij->i", v0, v0)
    d01 = np.einsum("ij,ij->i", v0, v1)
    d11 = np.einsum("ij,ij->i", v1, v1)
    d20 = np.einsum("ij,ij->i", v2, v0)
    d21 = np.einsum("ij,ij->i", v2, v1)
    den = d00 * d11 - d01 * d01
    den = np.where(np.abs(den) > 1e-300, den, 1e-300)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    return np.clip(np.stack([1 - v - w, v, w], 1), 0.0, 1.0)


def _have_igl() -> bool:
    try:
        import igl  # noqa: F401
        return True
    except ImportError:
        return False


class ClosestPoints:
    """Closest-point queries on a fixed triangle mesh (see module docstring).

    Args:
        vertices: (N, 3); triangles: (M, 3).
        method: ``"auto"`` (libigl if installed), ``"igl"`` or ``"kdtree"``.
        k: candidate triangles per query for the KD-tree method.
    """

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, method: str = "auto", k: int = 12):
        self.vertices = np.ascontiguousarray(vertices, np.float64)
        self.triangles = np.ascontiguousarray(triangles, np.int64)
        if len(self.triangles) == 0:
            raise ValueError("ClosestPoints: the mesh has no triangles")
        if method == "auto":
            method = "igl" if _have_igl() else "kdtree"
        if method not in ("igl", "kdtree"):
            raise ValueError(f"method: expected auto, igl or kdtree, got {method!r}")
        self.method = method
        self.k = int(min(k, len(self.triangles)))
        if method == "igl":
            import igl

            self._tree = igl.AABB()
            self._tree.init(self.vertices, self.triangles)
        else:
            self._tree = cKDTree(self.vertices[self.triangles].mean(axis=1))

    def query(self, points: np.ndarray):
        """Closest surface points.

        Returns:
            (closest (Q, 3) float64, triangle (Q,) int64, barycentrics (Q, 3), distance (Q,)).
        """
        p = np.ascontiguousarray(points, np.float64).reshape(-1, 3)
        v, t = self.vertices, self.triangles
        if self.method == "igl":
            sq, tri, closest = self._tree.squared_distance(v, t, p)[:3]
            tri = np.asarray(tri, np.int64).ravel()
            closest = np.asarray(closest, np.float64)
            abc = v[t[tri]]
            bary = barycentrics_of(closest, abc[:, 0], abc[:, 1], abc[:, 2])
            return closest, tri, bary, np.sqrt(np.maximum(np.asarray(sq).ravel(), 0.0))
        _, cand = self._tree.query(p, k=self.k)
        cand = np.asarray(cand).reshape(len(p), -1)
        abc = v[t[cand]]  # (Q, k, 3, 3)
        cl, bary, sq = closest_on_triangles(p[:, None, :], abc[:, :, 0], abc[:, :, 1], abc[:, :, 2])
        best = np.argmin(sq, axis=1)
        rows = np.arange(len(p))
        return (cl[rows, best], cand[rows, best].astype(np.int64), bary[rows, best],
                np.sqrt(np.maximum(sq[rows, best], 0.0)))
