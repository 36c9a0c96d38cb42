"""A straightforward numpy z-buffer with the same semantics as the Cython rasteriser.

The reference of :func:`face3d_data.render.rasterize` (the tests compare them, ``benchmarks/render.py``
times them): it expands every triangle into the pixel centres of its clipped bounding box with
whole-array numpy operations, tests them with the same float64 edge functions (cross(a - p, b - p)
on positively wound triangles, top-left rule on ties) and resolves the z-buffer by sorting: per
pixel the largest float32 depth wins, ties going to the earliest triangle. Slow and memory-hungry
(every candidate pixel of every triangle at once); for checks, not for use.

Frames: canonical (0-based, pixel centres at integers, y down); z larger = closer.
"""

from __future__ import annotations

import numpy as np


def _tie_inside(a, b):
    """Top-left rule for edge a->b (arrays (M, 2)) of positively wound triangles: the inward
    normal (ay - by, bx - ax) points right, or straight down for a horizontal edge."""
    nx = a[:, 1] - b[:, 1]
    return (nx > 0) | ((nx == 0) & (b[:, 0] - a[:, 0] > 0))


def _candidates(p, height, width):
    """Pixel centres in each triangle's clipped bbox: (triangle index, x, y) arrays."""
    x0 = np.maximum(np.ceil(p[:, :, 0].min(1)), 0)
    x1 = np.minimum(np.floor(p[:, :, 0].max(1)), width - 1)
    y0 = np.maximum(np.ceil(p[:, :, 1].min(1)), 0)
    y1 = np.minimum(np.floor(p[:, :, 1].max(1)), height - 1)
    nx = np.where(x1 >= x0, x1 - x0 + 1, 0).astype(np.int64)
    ny = np.where(y1 >= y0, y1 - y0 + 1, 0).astype(np.int64)
    count = nx * ny
    tri = np.repeat(np.arange(len(p)), count)
    local = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return tri, x0[tri] + local % nx[tri], y0[tri] + local // nx[tri]


def reference_rasterize(vertices, triangles, height, width):
    """Numpy z-buffer of ``vertices`` (N, 3) canonical and ``triangles`` (M, 3).

    Returns:
        (ids (H, W) int32, -1 = background; bary (H, W, 3) float32 barycentrics in the input vertex
        order; depth (H, W) float32, -inf = background).
    """
    v = np.asarray(vertices, np.float32).astype(np.float64)
    triangles = np.asarray(triangles, np.int64).reshape(-1, 3)
    ids = np.full((height, width), -1, np.int32)
    bary = np.zeros((height, width, 3), np.float32)
    depth = np.full((height, width), -np.inf, np.float32)
    p = v[triangles]                                                      # (M, 3 vertices, xyz)
    area2 = ((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1])
             - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1]))
    keep = np.nonzero(np.isfinite(p).all((1, 2)) & (area2 != 0))[0]
    p, area2 = p[keep], area2[keep]
    negative = area2 < 0                                   # wind every triangle positively
    p[negative] = p[negative][:, [0, 2, 1]]
    tri, xs, ys = _candidates(p, height, width)
    if tri.size == 0:
        return ids, bary, depth
    inside = np.ones(tri.shape, bool)
    weights = []
    for a, b in ((1, 2), (2, 0), (0, 1)):                  # edge opposite vertex 0, 1, 2
        ax, ay = p[tri, a, 0] - xs, p[tri, a, 1] - ys      # edge function cross(a - p, b - p)
        bx, by = p[tri, b, 0] - xs, p[tri, b, 1] - ys
        w = ax * by - ay * bx
        inside &= (w > 0) | ((w == 0) & _tie_inside(p[:, a], p[:, b])[tri])
        weights.append(w)
    b = np.stack(weights, -1) * (1.0 / np.abs(area2))[tri, None]
    z = (b[:, 0] * p[tri, 0, 2] + b[:, 1] * p[tri, 1, 2] + b[:, 2] * p[tri, 2, 2]).astype(np.float32)
    b[negative[tri]] = b[negative[tri]][:, [0, 2, 1]]      # back to the input vertex order
    tri, xs, ys, b, z = tri[inside], xs[inside].astype(int), ys[inside].astype(int), b[inside], z[inside]
    if tri.size == 0:
        return ids, bary, depth
    pixel = ys * width + xs
    order = np.lexsort((tri, -z.astype(np.float64), pixel))              # pixel, then nearest, then first
    first = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]]]
    ids.flat[pixel[first]] = keep[tri[first]]
    depth.flat[pixel[first]] = z[first]
    bary.reshape(-1, 3)[pixel[first]] = b[first].astype(np.float32)
    return ids, bary, depth
