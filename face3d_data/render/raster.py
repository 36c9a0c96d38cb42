"""Z-buffer rasterisation of triangle meshes on the CPU (Cython kernels in ``face3d_data._raster``).

Frame: the canonical image frame, 0-based, x right, y down; pixel (x, y) is ``image[y, x]`` and is
sampled at the integer point (x, y). Vertex z: larger = closer; the largest interpolated z wins
(ties keep the earlier triangle). A top-left fill rule draws a pixel centre lying exactly on an
edge shared by two triangles exactly once. Zero-area triangles and triangles with a NaN/inf
coordinate draw nothing; triangles partly or wholly off-screen, or of any extent, are clipped in
float64. See docs/rendering.md.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Sequence

import numpy as np

from face3d_data import _raster
from face3d_data.render._checks import as_attributes, as_size, as_threads, as_triangles, as_vertices


class Raster(NamedTuple):
    """Per-pixel result of :func:`rasterize` (shapes (H, W) or, batched, (B, H, W)).

    triangle_id: int32, index into ``triangles``, -1 = background.
    barycentric: (..., 3) float32 weights of the triangle's three vertices (0 on background).
    depth: float32 interpolated vertex z (larger = closer), -inf on background.
    """
    triangle_id: np.ndarray
    barycentric: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """bool, True where a triangle covers the pixel."""
        return self.triangle_id >= 0


def _empty_raster(shape: tuple[int, ...]) -> Raster:
    return Raster(np.full(shape, -1, np.int32), np.zeros(shape + (3,), np.float32),
                  np.full(shape, -np.inf, np.float32))


def rasterize(vertices, triangles, height: int, width: int) -> Raster:
    """Z-buffer a mesh.

    Args:
        vertices: (N, 3) float32 (any real dtype is converted once), canonical image frame, z
            larger = closer.
        triangles: (M, 3) integer vertex indices; an out-of-range index raises ``ValueError``.
        height, width: output size in pixels.

    Returns:
        :class:`Raster` with (H, W) triangle ids, (H, W, 3) barycentrics and (H, W) depth.
    """
    v = as_vertices(vertices)
    t = as_triangles(triangles, len(v))
    out = _empty_raster((as_size(height, "height"), as_size(width, "width")))
    _raster.rasterize_into(v, t, out.depth, out.triangle_id, out.barycentric)
    return out


def interpolate(attributes, raster: Raster, triangles) -> np.ndarray:
    """Interpolate per-vertex attributes with a raster's barycentrics.

    Args:
        attributes: (N, C) per-vertex values (or (N,), giving an (H, W) result).
        raster: the :class:`Raster` of this mesh (single image, (H, W) fields).
        triangles: (M, 3) the triangles the raster was made with.

    Returns:
        (H, W, C) float32; 0 on background (use :func:`render_attributes` for another value).
    """
    return _interpolate(attributes, raster, triangles, 0.0)


def _interpolate(attributes, raster: Raster, triangles, background: float) -> np.ndarray:
    ids = np.ascontiguousarray(raster.triangle_id, dtype=np.int32)
    bary = np.ascontiguousarray(raster.barycentric, dtype=np.float32)
    if ids.ndim != 2 or bary.shape != ids.shape + (3,):
        raise ValueError(f"raster: expected (H, W) ids and (H, W, 3) barycentrics, got "
                         f"{ids.shape} and {bary.shape}")
    attr, flat = as_attributes(attributes, np.asarray(attributes).shape[0])
    tri = as_triangles(triangles, len(attr))
    if ids.size and ids.max() >= len(tri):
        raise ValueError(f"raster: triangle id {ids.max()} is out of range for {len(tri)} triangles")
    out = np.empty(ids.shape + (attr.shape[1],), np.float32)
    _raster.interpolate_into(attr, tri, ids, bary, float(background), out)
    return out[..., 0] if flat else out


def render_attributes(vertices, triangles, attributes, height: int, width: int,
                      background: float = 0.0) -> np.ndarray:
    """Render per-vertex attributes (colours, NCC codes, positions...) with the z-buffer.

    Args:
        vertices: (N, 3) canonical image frame, z larger = closer.
        triangles: (M, 3) integer vertex indices.
        attributes: (N, C) per-vertex values (or (N,), giving an (H, W) image).
        height, width: output size; background: value of uncovered pixels.

    Returns:
        (H, W, C) float32.
    """
    v = as_vertices(vertices)
    attr, flat = as_attributes(attributes, len(v))
    out = _render_fused(v, as_triangles(triangles, len(v)), attr, height, width, background)[0]
    return out[..., 0] if flat else out


def _render_fused(v, t, attr, height, width, background):
    """One z-buffer pass that interpolates ``attr`` (N, C) as it goes (no stored barycentrics).

    Returns the (H, W, C) float32 image and the (H, W) float32 depth (-inf = not covered).
    """
    shape = (as_size(height, "height"), as_size(width, "width"))
    depth = np.full(shape, -np.inf, np.float32)
    out = np.full(shape + (attr.shape[1],), background, np.float32)
    _raster.rasterize_into(v, t, depth, attributes=attr, out=out)
    return out, depth


def render_texture(vertices, triangles, uv, texture, height: int, width: int,
                   background: float = 0.0) -> np.ndarray:
    """Render a UV-textured mesh with bilinear texture sampling.

    Args:
        vertices: (N, 3) canonical image frame, z larger = closer.
        triangles: (M, 3) integer vertex indices.
        uv: (N, 2) texel coordinates in the texture's own canonical frame: u = column, v = row
            (y down), texel centres at integers; lookups outside the texture are edge-clamped.
        texture: (Ht, Wt, C) or (Ht, Wt) image, any real dtype (sampled in float32).
        height, width: output size; background: value of uncovered pixels.

    Returns:
        (H, W, C) float32 (or (H, W) for a 2-D texture).
    """
    v = as_vertices(vertices)
    uv_arr, _ = as_attributes(uv, len(v), "uv")
    if uv_arr.shape[1] != 2:
        raise ValueError(f"uv: expected shape (N, 2), got {np.shape(uv)}")
    tex = np.asarray(texture)
    flat = tex.ndim == 2
    if flat:
        tex = tex[:, :, None]
    if tex.ndim != 3 or tex.shape[0] == 0 or tex.shape[1] == 0:
        raise ValueError(f"texture: expected a non-empty (Ht, Wt, C) or (Ht, Wt) image, "
                         f"got {np.shape(texture)}")
    tex = np.ascontiguousarray(tex, dtype=np.float32)
    coords, depth = _render_fused(v, as_triangles(triangles, len(v)), uv_arr, height, width, 0.0)
    valid = (depth > -np.inf).astype(np.int32)   # covered: a triangle won the pixel
    out = np.empty(valid.shape + (tex.shape[2],), np.float32)
    _raster.sample_bilinear_into(tex, coords, valid, float(background), out)
    return out[..., 0] if flat else out


def _batch_inputs(meshes, with_attributes: bool):
    verts, tris, attrs = [], [], []
    for i, mesh in enumerate(meshes):
        try:
            parts = tuple(mesh)
        except TypeError:
            parts = ()
        if len(parts) != (3 if with_attributes else 2):
            raise ValueError(f"meshes[{i}]: expected a (vertices, triangles"
                             f"{', attributes' if with_attributes else ''}) tuple")
        v = as_vertices(parts[0], f"meshes[{i}] vertices")
        verts.append(v)
        tris.append(as_triangles(parts[1], len(v), f"meshes[{i}] triangles"))
        if with_attributes:
            attrs.append(as_attributes(parts[2], len(v), f"meshes[{i}] attributes")[0])
    if with_attributes and len({a.shape[1] for a in attrs}) > 1:
        raise ValueError("meshes: every attributes array must have the same number of channels")
    return verts, tris, attrs


def _run_batch(verts, tris, attrs, height, width, background, num_threads):
    """Z-buffer B meshes: a full :class:`Raster` without ``attrs``, else only the (B, H, W, C)
    attribute images (interpolated during the z-buffer pass; the raster is then depth only)."""
    shape = (len(verts), as_size(height, "height"), as_size(width, "width"))
    threads = as_threads(num_threads)
    # uninitialised: rasterize_many fills each image's buffers in the thread that renders it
    if attrs:
        raster = Raster(None, None, np.empty(shape, np.float32))
        out = np.empty(shape + (attrs[0].shape[1],), np.float32)
    else:
        raster = Raster(np.empty(shape, np.int32), np.empty(shape + (3,), np.float32),
                        np.empty(shape, np.float32))
        out = None
    if not verts:
        return raster, out

    def part(b0, b1):
        return dict(depth=raster.depth[b0:b1],
                    triangle_id=None if attrs else raster.triangle_id[b0:b1],
                    barycentric=None if attrs else raster.barycentric[b0:b1],
                    attributes=attrs[b0:b1] if attrs else None,
                    out=out[b0:b1] if attrs else None, background=float(background))
    if _raster.HAVE_OPENMP or threads == 1:
        _raster.rasterize_many(verts, tris, **part(0, len(verts)), num_threads=threads)
    else:   # no OpenMP: the kernels release the GIL, so plain threads run in parallel
        def one(b):
            _raster.rasterize_many(verts[b:b + 1], tris[b:b + 1], **part(b, b + 1), num_threads=1)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(len(verts))))
    return raster, out


def rasterize_batch(meshes: Sequence, height: int, width: int, num_threads: int | None = None) -> Raster:
    """Z-buffer many meshes, one image each, on several threads (GIL released).

    Args:
        meshes: sequence of B ``(vertices (N_b, 3), triangles (M_b, 3))`` pairs.
        height, width: size of every image.
        num_threads: worker threads; None = every core available to this process.

    Returns:
        :class:`Raster` with (B, H, W) ids, (B, H, W, 3) barycentrics, (B, H, W) depth.
    """
    verts, tris, _ = _batch_inputs(meshes, False)
    return _run_batch(verts, tris, [], height, width, 0.0, num_threads)[0]


def render_attributes_batch(meshes: Sequence, height: int, width: int, background: float = 0.0,
                            num_threads: int | None = None) -> np.ndarray:
    """:func:`render_attributes` over many meshes on several threads.

    Args:
        meshes: sequence of B ``(vertices (N_b, 3), triangles (M_b, 3), attributes (N_b, C))``
            triples, the same C for all.
        height, width, background: as in :func:`render_attributes`.
        num_threads: worker threads; None = every core available to this process.

    Returns:
        (B, H, W, C) float32.
    """
    verts, tris, attrs = _batch_inputs(meshes, True)
    if not verts:
        return np.zeros((0, as_size(height, "height"), as_size(width, "width"), 0), np.float32)
    return _run_batch(verts, tris, attrs, height, width, background, num_threads)[1]
