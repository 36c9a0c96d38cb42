"""Exact keypoint decoding weights: each landmark as a fixed linear combination of texels.

A position map texel covered by UV triangle ``t = (a, b, c)`` with barycentrics ``(β_a, β_b, β_c)``
(:attr:`UVAssets.raster`) holds exactly ``β_a·P_a + β_b·P_b + β_c·P_c`` of the crop-frame vertex
positions ``P``. For a landmark vertex ``v``, the texels covered by the triangles around ``v`` give a
small linear system ``T = B·P_U`` (one row per texel, one column per vertex ``U`` of those
triangles). Whenever ``P_v`` is determined by it (the unit row ``e_v`` lies in the row space of
``B``), the minimum-norm weights ``w = (B⁺)ᵀ e_v`` satisfy ``wᵀB = e_v`` and therefore
``wᵀT = P_v`` for **every** position map rendered from the model: decoding is exact up to float
rounding, across creases where bilinear reading mixes two triangles. The ring of triangles grows
(up to :data:`MAX_RINGS`) until ``P_v`` is determined; a landmark still undetermined (its triangles
cover too few texels at a very low resolution) falls back to bilinear weights at its exact UV.

The weights sum to 1, so the z shift of a position map passes through unchanged. On a noisy map
(a network's prediction, float16 storage) a per-texel error ``ε`` gives a keypoint error of at most
``ε·Σ|w|`` (:attr:`KeypointWeights.gain`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: The ring of triangles around a landmark grows at most this many times.
MAX_RINGS = 3
_DETERMINED_TOL = 1e-6


class KeypointWeights(NamedTuple):
    """Per-keypoint texel weights: keypoint ``k = Σ_j weights[k, j] · pos.flat[texels[k, j]]``.

    texels: (K, J) int64 row-major flat texel indices ``v·R + u`` (padding: 0 with weight 0).
    weights: (K, J) float64; each row sums to 1.
    exact: (K,) bool, False where the keypoint fell back to bilinear weights.
    resolution: R, the side of the maps these weights read.
    """

    texels: np.ndarray
    weights: np.ndarray
    exact: np.ndarray
    resolution: int

    @property
    def gain(self) -> np.ndarray:
        """(K,) float64 ``Σ|w|``: the keypoint error per unit of per-texel error."""
        return np.abs(self.weights).sum(axis=1)


def bilinear_weights(kpt_uv: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4 texels and weights of bilinear reading at (2, K) float texel coordinates (u; v)
    of a ``rows × cols`` map (coordinates inside the map; callers check).

    Returns ((K, 4) int64 row-major flat texel indices ``v·cols + u``, (K, 4) float64 weights).
    """
    u, v = np.asarray(kpt_uv[0], np.float64), np.asarray(kpt_uv[1], np.float64)
    u0 = np.clip(np.floor(u).astype(np.int64), 0, cols - 2)
    v0 = np.clip(np.floor(v).astype(np.int64), 0, rows - 2)
    fu, fv = u - u0, v - v0
    texels = np.stack([v0 * cols + u0, v0 * cols + u0 + 1,
                       (v0 + 1) * cols + u0, (v0 + 1) * cols + u0 + 1], axis=1)
    weights = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)
    return texels, weights


def _vertex_triangles(triangles: np.ndarray, n_vertices: int):
    """CSR adjacency vertex → triangles: (offsets (N+1,), triangle ids)."""
    flat = triangles.ravel()
    order = np.argsort(flat, kind="stable")
    offsets = np.searchsorted(flat[order], np.arange(n_vertices + 1))
    return offsets, order // 3


def _landmark_weights(vertex, triangles, adjacency, texels_of, bary_flat, ids_flat):
    """(texel indices, weights) exactly decoding ``vertex``, or None when not determined."""
    offsets, tri_ids = adjacency
    vertices = np.array([vertex])
    for _ in range(MAX_RINGS):
        ring = np.unique(np.concatenate([tri_ids[offsets[u]:offsets[u + 1]] for u in vertices]))
        texels = np.concatenate([texels_of(t) for t in ring])
        if texels.size:
            corners = triangles[ids_flat[texels]]                      # (n, 3) vertex ids
            unknowns, column = np.unique(corners, return_inverse=True)
            system = np.zeros((texels.size, unknowns.size))
            np.add.at(system, (np.repeat(np.arange(texels.size), 3), column.ravel()),
                      bary_flat[texels].astype(np.float64).ravel())
            target = (unknowns == vertex).astype(np.float64)
            if target.any():
                weights = np.linalg.pinv(system).T @ target
                if np.abs(weights @ system - target).max() < _DETERMINED_TOL:
                    return texels, weights
        vertices = np.unique(triangles[ring])
    return None


def keypoint_weights(raster, triangles: np.ndarray, landmarks: np.ndarray,
                     kpt_uv: np.ndarray) -> KeypointWeights:
    """Exact decoding weights of the landmark vertices (module docstring).

    Args:
        raster: the model mesh rasterised in the UV texel frame ((R, R) fields).
        triangles: (M, 3) int the triangles the raster refers to.
        landmarks: (K,) int vertex indices of the keypoints.
        kpt_uv: (2, K) float64 exact texel coordinates of the landmarks (bilinear fallback).

    Returns:
        :class:`KeypointWeights` with J = the largest texel count of a keypoint.
    """
    ids = np.asarray(raster.triangle_id)
    resolution = ids.shape[1]
    ids_flat = ids.ravel().astype(np.int64)
    bary_flat = np.asarray(raster.barycentric, np.float32).reshape(-1, 3)
    tri = np.asarray(triangles, np.int64)
    covered = np.flatnonzero(ids_flat >= 0)
    by_triangle = covered[np.argsort(ids_flat[covered], kind="stable")]
    starts = np.searchsorted(ids_flat[by_triangle], np.arange(len(tri) + 1))

    def texels_of(t):
        return by_triangle[starts[t]:starts[t + 1]]

    adjacency = _vertex_triangles(tri, int(tri.max()) + 1)
    fallback_texels, fallback_weights = bilinear_weights(kpt_uv, resolution, resolution)
    rows, exact = [], []
    for k, vertex in enumerate(np.asarray(landmarks, np.int64)):
        found = _landmark_weights(int(vertex), tri, adjacency, texels_of, bary_flat, ids_flat)
        exact.append(found is not None)
        rows.append(found if found is not None else (fallback_texels[k], fallback_weights[k]))
    width = max(len(t) for t, _ in rows)
    texels = np.zeros((len(rows), width), np.int64)
    weights = np.zeros((len(rows), width), np.float64)
    for k, (t, w) in enumerate(rows):
        texels[k, :len(t)], weights[k, :len(w)] = t, w
    return KeypointWeights(texels, weights, np.array(exact, bool), int(resolution))


def decode_with_weights(posmap: np.ndarray, kpt: KeypointWeights) -> np.ndarray:
    """Keypoints of (R, R, 3) or (B, R, R, 3) position maps: (K, 3) or (B, K, 3) float32."""
    pos = np.asarray(posmap)
    if pos.ndim not in (3, 4) or pos.shape[-3:] != (kpt.resolution, kpt.resolution, 3):
        raise ValueError(f"posmap must have shape (R, R, 3) or (B, R, R, 3) with R = "
                         f"{kpt.resolution} (the kpt weights' resolution), got {pos.shape}")
    return weighted_texels(pos, kpt.texels, kpt.weights)


def weighted_texels(posmap: np.ndarray, texels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``Σ_j weights[k, j] · posmap.flat[texels[k, j]]`` in float64 for (..., H, W, 3) maps and
    (K, J) flat texel indices and weights: (..., K, 3) float32 (indices are not checked)."""
    pos = np.asarray(posmap)
    flat = pos.reshape(pos.shape[:-3] + (-1, 3))
    gathered = flat[..., texels, :].astype(np.float64)                # (..., K, J, 3)
    return np.einsum("...kjc,kj->...kc", gathered, weights).astype(np.float32)
