"""Image-space maps of projected meshes: PNCC, depth, normals, per-vertex visibility, UV space.

Frames: vertices are in the canonical image frame (0-based, x right, y down, pixel centres at
integers) with z larger = closer, in the same units as x and y (``w300lp.pose.project``).
Several faces sharing one topology are given as a list (or (F, N, 3) array) of vertex arrays and
are composited by true z in one z-buffer (unlike 3DDFA v1, which overwrote face by face).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from face3d_data.render._checks import as_attributes, as_triangles, as_vertices
from face3d_data.render.raster import Raster, interpolate, rasterize, render_attributes

# ----------------------------------------------------------------------------------------------
# meshes

def stack_faces(vertices, triangles, attributes=None):
    """Merge F faces with one topology into one mesh so that one z-buffer composites them.

    Args:
        vertices: (N, 3) or (F, N, 3) array, or a list of F (N, 3) arrays.
        triangles: (M, 3) vertex indices shared by every face.
        attributes: optional (N, C) per-vertex values, repeated for every face.

    Returns:
        (vertices (F*N, 3) float32, triangles (F*M, 3) int32, attributes (F*N, C) float32 or None).
    """
    faces = [vertices] if np.ndim(vertices) == 2 else list(vertices)
    faces = [as_vertices(v, f"vertices[{i}]") for i, v in enumerate(faces)]
    n = len(faces[0]) if faces else 0
    if len(faces) == 1:  # one face: nothing to merge, no copies
        attr = None if attributes is None else as_attributes(attributes, n)[0]
        return faces[0], as_triangles(triangles, n), attr
    if any(len(v) != n for v in faces):
        raise ValueError("vertices: every face must have the same number of vertices")
    tri = as_triangles(triangles, n)
    v_all = np.concatenate(faces) if faces else np.zeros((0, 3), np.float32)
    t_all = (np.concatenate([tri + i * n for i in range(len(faces))]).astype(np.int32)
             if faces else np.zeros((0, 3), np.int32))
    a_all = None
    if attributes is not None:
        attr, _ = as_attributes(attributes, n)
        a_all = np.tile(attr, (len(faces), 1))
    return v_all, t_all, a_all


# ----------------------------------------------------------------------------------------------
# PNCC

def ncc_code(mean_shape, expression_mean=None, keep=None) -> np.ndarray:
    """Normalised Coordinate Code: per-axis min-max normalisation of a reference shape.

    3DDFA v1 (``pncc_code.npy``): ``ncc_code(u_shp)`` on the neutral mean of all vertices.
    3DDFA_V2 (``ncc_code.npy``): ``ncc_code(u_shp, u_exp, keep=no_neck_vertices)``, i.e. on the
    mean plus the expression mean, restricted to ``keep`` and normalised on that subset. The two
    differ by up to 0.19 and are not interchangeable (docs/formats.md#ncc-codes).

    Args:
        mean_shape: (N, 3) model-space mean shape.
        expression_mean: optional (N, 3) expression mean added first.
        keep: optional vertex indices; the code is computed on (and returned for) these only.

    Returns:
        (N, 3) or (len(keep), 3) float32 in [0, 1]; channel order x, y, z (-> R, G, B).
    """
    shape = np.asarray(mean_shape, np.float64)
    if shape.ndim != 2 or shape.shape[1] != 3:
        raise ValueError(f"mean_shape: expected shape (N, 3), got {shape.shape}")
    if expression_mean is not None:
        exp = np.asarray(expression_mean, np.float64)
        if exp.shape != shape.shape:
            raise ValueError(f"expression_mean: expected shape {shape.shape}, got {exp.shape}")
        shape = shape + exp
    if keep is not None:
        keep = np.asarray(keep)
        if keep.ndim != 1 or not np.issubdtype(keep.dtype, np.integer) or \
                (keep.size and (keep.min() < 0 or keep.max() >= len(shape))):
            raise ValueError(f"keep: expected vertex indices in [0, {len(shape)})")
        shape = shape[keep]
    if len(shape) == 0 or not np.all(np.isfinite(shape)):
        raise ValueError("mean_shape: must be non-empty and finite")
    lo, hi = shape.min(0), shape.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((shape - lo) / span).astype(np.float32)


def render_pncc(vertices, triangles, code, height: int, width: int) -> np.ndarray:
    """Projected NCC: the NCC code rendered as colours with the z-buffer.

    Args:
        vertices: (N, 3) canonical image frame, or several faces as (F, N, 3) / a list.
        triangles: (M, 3) vertex indices; code: (N, 3) :func:`ncc_code`.
        height, width: image size.

    Returns:
        (H, W, 3) float32 in [0, 1], RGB = NCC x, y, z; background 0. ``(pncc * 255).round()``
        as uint8 gives the 3DDFA image.
    """
    if np.ndim(vertices) == 2:   # one face: straight to the z-buffer (checked there)
        return render_attributes(vertices, triangles, code, height, width, background=0.0)
    v, t, a = stack_faces(vertices, triangles, code)
    return render_attributes(v, t, a, height, width, background=0.0)


# ----------------------------------------------------------------------------------------------
# depth

class DepthMap(NamedTuple):
    """depth: (H, W) float32 raw interpolated z (image units, larger = closer), 0 where not
    covered; mask: (H, W) bool, True where a face covers the pixel."""
    depth: np.ndarray
    mask: np.ndarray


def render_depth(vertices, triangles, height: int, width: int) -> DepthMap:
    """Raw z-buffer depth of one or several faces (composited by true z).

    Args:
        vertices: (N, 3) canonical image frame, or (F, N, 3) / a list of faces.
        triangles: (M, 3) vertex indices.
    """
    if np.ndim(vertices) == 2:   # one face: straight to the z-buffer (checked there)
        raster = rasterize(vertices, triangles, height, width)
    else:
        raster = rasterize(*stack_faces(vertices, triangles)[:2], height, width)
    mask = raster.mask
    return DepthMap(np.where(mask, raster.depth, 0).astype(np.float32), mask)


def depth_visual(depth_map: DepthMap, bits: int = 8, near=None, far=None) -> np.ndarray:
    """Normalised depth picture: nearer = brighter, background 0.

    Args:
        depth_map: from :func:`render_depth`.
        bits: 8 -> uint8, 16 -> uint16.
        near, far: z mapped to the maximum / to 1; default the covered pixels' max / min z.

    Returns:
        (H, W) uint8 or uint16; covered pixels in [1, 2**bits - 1].
    """
    if bits not in (8, 16):
        raise ValueError(f"bits: expected 8 or 16, got {bits!r}")
    depth, mask = depth_map
    dtype, top = (np.uint8, 255) if bits == 8 else (np.uint16, 65535)
    out = np.zeros(depth.shape, dtype)
    if not mask.any():
        return out
    z = depth[mask].astype(np.float64)
    near = z.max() if near is None else float(near)
    far = z.min() if far is None else float(far)
    span = near - far if near != far else 1.0
    scaled = np.clip((z - far) / span, 0, 1) * (top - 1) + 1
    out[mask] = np.round(scaled).astype(dtype)
    return out


# ----------------------------------------------------------------------------------------------
# normals

def vertex_normals(vertices, triangles) -> np.ndarray:
    """Area-weighted unit vertex normals, (v1 - v0) x (v2 - v0) summed over incident triangles.

    Args:
        vertices: (N, 3) in a right-handed frame (e.g. model space); triangles: (M, 3).

    Returns:
        (N, 3) float32 unit vectors (zero for vertices of no non-degenerate triangle).
    """
    v = as_vertices(vertices).astype(np.float64)
    t = as_triangles(triangles, len(v))
    face = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    face[~np.all(np.isfinite(face), axis=1)] = 0
    normals = np.zeros_like(v)
    for k in range(3):
        np.add.at(normals, t[:, k], face)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    return (normals / np.where(length > 0, length, 1)).astype(np.float32)


def _camera_normals(vertices, triangles) -> np.ndarray:
    """Vertex normals of canonical-frame vertices, in the camera frame (y down, z to the viewer)."""
    flip = np.array([1, -1, 1], np.float32)
    return vertex_normals(vertices * flip, triangles) * flip


def render_normals(vertices, triangles, height: int, width: int, normals=None) -> np.ndarray:
    """Per-pixel unit normals in the camera frame (x right, y down, z towards the viewer).

    Args:
        vertices: (N, 3) canonical image frame (a left-handed frame: y points down).
        triangles: (M, 3), wound counter-clockwise seen from outside in a right-handed model
            frame (the BFM convention), so a surface facing the camera gets z > 0.
        normals: optional (N, 3) normals already in the camera frame; default computed from
            ``vertices`` (with y flipped to a right-handed frame and back).

    Returns:
        (H, W, 3) float32 unit vectors, 0 on background.
    """
    v = as_vertices(vertices)
    if normals is None:
        normals = _camera_normals(v, triangles)
    raster = rasterize(v, triangles, height, width)
    image = interpolate(normals, raster, triangles)
    length = np.linalg.norm(image, axis=-1, keepdims=True)
    return np.where(length > 0, image / np.where(length > 0, length, 1), 0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# visibility

def vertex_visibility(vertices, triangles, height: int, width: int, tolerance: float = 1.0,
                      cull_back_faces: bool = True, raster: Raster | None = None) -> np.ndarray:
    """Which vertices are seen by the camera (inside the image and not occluded by the mesh).

    A vertex is visible when it projects inside the image, faces the camera (its normal, as in
    :func:`render_normals`, has z >= 0; skipped when ``cull_back_faces`` is False), and either one
    of its triangles wins a pixel of the z-buffer, or its z is at least the nearest covered depth
    among the 2x2 pixel centres around it minus ``tolerance + 1.5 * slope``, where slope is the
    surface's depth change per pixel from the vertex normal (capped at 100): a steep surface near
    a silhouette is not mistaken for an occluder. Non-finite vertices are invisible.

    Args:
        vertices: (N, 3) canonical image frame, z in image units; triangles: (M, 3), wound as
            documented in :func:`render_normals`.
        tolerance: allowed depth deficit (image units); raster: a precomputed :func:`rasterize`.

    Returns:
        (N,) bool.
    """
    v = as_vertices(vertices)
    t = as_triangles(triangles, len(v))
    if raster is None:
        raster = rasterize(v, t, height, width)
    normals = _camera_normals(v, t).astype(np.float64)
    drawn = np.zeros(len(v), bool)
    drawn[t[np.unique(raster.triangle_id[raster.mask])].ravel()] = True
    return depth_test_visibility(v, normals, drawn, raster, height, width, tolerance, cull_back_faces)


def depth_test_visibility(points, normals, drawn, raster: Raster, height: int, width: int,
                          tolerance: float = 1.0, cull_back_faces: bool = True) -> np.ndarray:
    """The visibility rule of :func:`vertex_visibility` for given points, their normals and
    whether one of their triangles won a pixel (for callers that test a few vertices of a mesh).

    Args:
        points: (K, 3) canonical image frame; normals: (K, 3) unit, as :func:`render_normals`;
        drawn: (K,) bool; raster: the mesh's :func:`rasterize`.

    Returns:
        (K,) bool.
    """
    x, y, z = (points[:, k].astype(np.float64) for k in range(3))
    normals = np.asarray(normals, np.float64)
    ok = np.isfinite(points).all(1) & (x > -0.5) & (x < width - 0.5) & (y > -0.5) & (y < height - 0.5)
    if cull_back_faces:
        ok &= normals[:, 2] >= 0
    visible = np.zeros(len(points), bool)
    if not ok.any():
        return visible
    xs, ys, zs, n = x[ok], y[ok], z[ok], normals[ok]
    x0 = np.clip(np.floor(xs), 0, width - 1).astype(int)
    y0 = np.clip(np.floor(ys), 0, height - 1).astype(int)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    d = np.where(raster.mask, raster.depth, np.inf)      # background never occludes
    nearest = np.minimum.reduce([d[y0, x0], d[y0, x1], d[y1, x0], d[y1, x1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.minimum(np.hypot(n[:, 0], n[:, 1]) / np.abs(n[:, 2]), 100.0)
    slope = np.where(np.isfinite(slope), slope, 100.0)
    visible[ok] = (zs >= nearest - tolerance - 1.5 * slope) | drawn[ok]
    return visible


# ----------------------------------------------------------------------------------------------
# UV space

def render_uv(uv, triangles, attributes, height: int, width: int, background: float = 0.0) -> np.ndarray:
    """Rasterise per-vertex attributes at their UV texel positions (e.g. a UV position map).

    Args:
        uv: (N, 2) texel coordinates in the UV image's canonical frame (u = column, v = row,
            y down, texel centres at integers). For BFM_UV-style [0, 1] coordinates with v up,
            use ``u * (width - 1)``, ``(1 - v) * (height - 1)``.
        triangles: (M, 3); attributes: (N, C), e.g. projected vertex positions.
        height, width: UV image size; background: value of uncovered texels.

    Returns:
        (H, W, C) float32. All z are equal in UV space, so where triangles overlap the first
        one in list order wins.
    """
    uv_arr, _ = as_attributes(uv, np.shape(uv)[0] if np.ndim(uv) else 0, "uv")
    if uv_arr.shape[1] != 2:
        raise ValueError(f"uv: expected shape (N, 2), got {np.shape(uv)}")
    flat = np.empty((len(uv_arr), 3), np.float32)
    flat[:, 0] = uv_arr[:, 0]  # column by column: a (N, 2) -> (N, 3) strided copy is slow
    flat[:, 1] = uv_arr[:, 1]
    flat[:, 2] = 0.0
    return render_attributes(flat, triangles, attributes, height, width, background)
