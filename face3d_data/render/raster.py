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
from face3d_data.render._checks import (
    as_attributes,
    as_kernel_triangles,
    as_out,
    as_size,
    as_threads,
    as_triangles,
    as_vertices,
    raise_bad_triangle,
)


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


def _raster_out(out, shape: tuple[int, int]) -> Raster:
    """Check an ``out=`` Raster: (H, W) int32 ids, (H, W, 3) float32 barycentrics, (H, W) float32
    depth, each writeable and C-contiguous; None -> new uninitialised buffers (the kernel fills)."""
    if out is None:
        return Raster(np.empty(shape, np.int32), np.empty(shape + (3,), np.float32),
                      np.empty(shape, np.float32))
    if not isinstance(out, Raster):
        raise ValueError(f"out: expected a Raster (e.g. an earlier rasterize() result), got {type(out).__name__}")
    as_out(out.triangle_id, shape, np.int32, "out.triangle_id")
    as_out(out.barycentric, shape + (3,), np.float32, "out.barycentric")
    as_out(out.depth, shape, np.float32, "out.depth")
    return out


def _image_out(out, shape: tuple[int, int], channels: int, flat: bool) -> np.ndarray:
    """Check an ``out=`` image ((H, W) when ``flat``, else (H, W, C) float32) and return its
    (H, W, C) view for the kernels; None -> a new uninitialised buffer."""
    if out is None:
        return np.empty(shape + (channels,), np.float32)
    if flat:
        return as_out(out, shape, np.float32, "out")[..., None]
    return as_out(out, shape + (channels,), np.float32, "out")


def _check_drawn(bad: int, t: np.ndarray, n_vertices: int) -> None:
    """Raise the triangle error a kernel reported (bad >= 0), for the wrappers."""
    if bad >= 0:
        raise_bad_triangle(t, bad, n_vertices)


def rasterize(vertices, triangles, height: int, width: int, out: Raster | None = None) -> Raster:
    """Z-buffer a mesh.

    Args:
        vertices: (N, 3) float32 (any real dtype is converted once), canonical image frame, z
            larger = closer.
        triangles: (M, 3) integer vertex indices; an out-of-range index raises ``ValueError``.
            int32 C-contiguous triangles are used as they are (their indices are checked while
            drawing); other dtypes or layouts are converted and checked on every call.
        height, width: output size in pixels.
        out: optional :class:`Raster` to write into and return (typically the result of an earlier
            call of the same size): (H, W) int32 ids, (H, W, 3) float32 barycentrics and (H, W)
            float32 depth, each writeable and C-contiguous, or ``ValueError``. Every pixel is
            overwritten; after an exception its contents are unspecified.

    Returns:
        :class:`Raster` with (H, W) triangle ids, (H, W, 3) barycentrics and (H, W) depth
        (``out`` itself when given).
    """
    v = as_vertices(vertices)
    t = as_kernel_triangles(triangles, len(v))
    shape = (as_size(height, "height"), as_size(width, "width"))
    result = _raster_out(out, shape)
    if not (shape[0] and shape[1]):   # nothing drawn, so nothing checked by the kernel
        t = as_triangles(t, len(v))
    _check_drawn(_raster.rasterize_into(v, t, result.depth, result.triangle_id, result.barycentric),
                 t, len(v))
    return result


def interpolate(attributes, raster: Raster, triangles, out: np.ndarray | None = None) -> np.ndarray:
    """Interpolate per-vertex attributes with a raster's barycentrics.

    Args:
        attributes: (N, C) per-vertex values (or (N,), giving an (H, W) result).
        raster: the :class:`Raster` of this mesh (single image, (H, W) fields).
        triangles: (M, 3) the triangles the raster was made with; the indices of the triangles
            the raster's pixels refer to are checked (``ValueError``), as is every id.
        out: optional (H, W, C) float32 ((H, W) for 1-D attributes) writeable C-contiguous array
            to write into and return, or ``ValueError``; every pixel is overwritten.

    Returns:
        (H, W, C) float32; 0 on background (use :func:`render_attributes` for another value).
    """
    return _interpolate(attributes, raster, triangles, 0.0, out)


def _interpolate(attributes, raster: Raster, triangles, background: float, out=None) -> np.ndarray:
    ids = np.ascontiguousarray(raster.triangle_id, dtype=np.int32)
    bary = np.ascontiguousarray(raster.barycentric, dtype=np.float32)
    if ids.ndim != 2 or bary.shape != ids.shape + (3,):
        raise ValueError(f"raster: expected (H, W) ids and (H, W, 3) barycentrics, got "
                         f"{ids.shape} and {bary.shape}")
    attr, flat = as_attributes(attributes, np.asarray(attributes).shape[0])
    tri = as_kernel_triangles(triangles, len(attr))
    image = _image_out(out, ids.shape, attr.shape[1], flat)
    bad = _raster.interpolate_into(attr, tri, ids, bary, float(background), image)
    if bad >= 0:
        t = int(ids.flat[bad])
        if t >= len(tri):
            raise ValueError(f"raster: triangle id {t} is out of range for {len(tri)} triangles")
        raise_bad_triangle(tri, t, len(attr))
    if out is not None:
        return out
    return image[..., 0] if flat else image


class InterpolationPlan(NamedTuple):
    """A raster resolved to vertices, for interpolating many attribute sets over one fixed raster
    (e.g. a UV raster: every position map of a model) with :func:`interpolate_planned`.

    vertex_ids: (H·W, 3) int32, the pixel's triangle's vertices; [-1, -1, -1] on background.
    weights: (H·W, 3) float32 barycentrics (0 on background).
    shape: (H, W). low, high: smallest and largest vertex id used (0, -1 when none).
    raster, triangles: what the plan was made from (the checked path, for inputs it cannot take).
    valid: False when the plan cannot be used at all (then every call takes that path).
    """
    vertex_ids: np.ndarray
    weights: np.ndarray
    shape: tuple
    low: int
    high: int
    raster: Raster
    triangles: np.ndarray
    valid: bool


def interpolation_plan(raster: Raster, triangles) -> InterpolationPlan:
    """Resolve a (single-image) raster's triangle ids to vertex ids, once.

    The plan is a copy: it does not follow later changes of ``raster`` or ``triangles``.
    Raises the ``ValueError`` of :func:`interpolate` for a malformed raster or a triangle id out
    of range; vertex indices are checked against each call's attributes instead.
    """
    ids = np.ascontiguousarray(raster.triangle_id, dtype=np.int32)
    bary = np.ascontiguousarray(raster.barycentric, dtype=np.float32)
    if ids.ndim != 2 or bary.shape != ids.shape + (3,):
        raise ValueError(f"raster: expected (H, W) ids and (H, W, 3) barycentrics, got "
                         f"{ids.shape} and {bary.shape}")
    tri = np.array(triangles)   # copies, for the checked path
    raster = Raster(ids.copy(), bary.copy(), raster.depth)
    flat = ids.ravel()
    covered = flat >= 0
    vertex_ids = np.full((flat.size, 3), -1, np.int32)
    weights = np.zeros((flat.size, 3), np.float32)
    valid = tri.ndim == 2 and tri.shape[1] == 3 and np.issubdtype(tri.dtype, np.integer)
    low, high = 0, -1
    if valid and covered.any():
        used = flat[covered]
        if used.max() >= len(tri):
            raise ValueError(f"raster: triangle id {int(used.max())} is out of range for {len(tri)} triangles")
        corners = tri[used]
        low, high = int(corners.min()), int(corners.max())
        valid = 0 <= low and high < 2 ** 31 - 1
        if valid:
            vertex_ids[covered] = corners
            weights[covered] = bary.reshape(-1, 3)[covered]
    return InterpolationPlan(vertex_ids, weights, ids.shape, low, high, raster, tri, bool(valid))


def interpolate_planned(attributes, plan: InterpolationPlan, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`interpolate` over the raster of ``plan`` (:func:`interpolation_plan`): the same
    values bit for bit, without the per-pixel triangle lookup.

    Args:
        attributes: (N, C) per-vertex values (or (N,), giving an (H, W) result).
        plan: from :func:`interpolation_plan`; a vertex id outside [0, N) (or a plan that is not
            valid) takes :func:`interpolate`, which raises its ``ValueError``.
        out: as in :func:`interpolate`.

    Returns:
        (H, W, C) float32; 0 on background.
    """
    shape = np.shape(attributes)
    if not plan.valid or not shape or plan.high >= shape[0]:
        return interpolate(attributes, plan.raster, plan.triangles, out)
    attr, flat = as_attributes(attributes, shape[0])
    image = _image_out(out, plan.shape, attr.shape[1], flat)
    _raster.interpolate_planned_into(attr, plan.vertex_ids, plan.weights, 0.0,
                                     image.reshape(-1, attr.shape[1]))
    if out is not None:
        return out
    return image[..., 0] if flat else image


def render_attributes(vertices, triangles, attributes, height: int, width: int,
                      background: float = 0.0, out: np.ndarray | None = None) -> np.ndarray:
    """Render per-vertex attributes (colours, NCC codes, positions...) with the z-buffer.

    Args:
        vertices: (N, 3) canonical image frame, z larger = closer.
        triangles: (M, 3) integer vertex indices (int32 C-contiguous: used as is, see
            :func:`rasterize`).
        attributes: (N, C) per-vertex values (or (N,), giving an (H, W) image).
        height, width: output size; background: value of uncovered pixels.
        out: optional (H, W, C) float32 ((H, W) for 1-D attributes) writeable C-contiguous array
            to write into and return, or ``ValueError``. Every pixel is overwritten; after an
            exception its contents are unspecified.

    Returns:
        (H, W, C) float32 (``out`` itself when given).
    """
    v = as_vertices(vertices)
    attr, flat = as_attributes(attributes, len(v))
    shape = (as_size(height, "height"), as_size(width, "width"))
    image = _image_out(out, shape, attr.shape[1], flat)
    _render_fused(v, as_kernel_triangles(triangles, len(v)), attr, image, background)
    if out is not None:
        return out
    return image[..., 0] if flat else image


def _render_fused(v, t, attr, image, background):
    """One z-buffer pass that interpolates ``attr`` (N, C) into ``image`` (H, W, C) float32 as it
    goes (no stored barycentrics); ``t`` from :func:`as_kernel_triangles`.

    Returns the (H, W) float32 depth (-inf = not covered).
    """
    depth = np.empty(image.shape[:2], np.float32)
    if not depth.size:   # nothing drawn, so nothing checked by the kernel
        t = as_triangles(t, len(v))
    _check_drawn(_raster.rasterize_into(v, t, depth, attributes=attr, out=image,
                                        background=float(background)), t, len(v))
    return depth


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
    coords = np.empty((as_size(height, "height"), as_size(width, "width"), 2), np.float32)
    depth = _render_fused(v, as_kernel_triangles(triangles, len(v)), uv_arr, coords, 0.0)
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
        tris.append(as_kernel_triangles(parts[1], len(v), f"meshes[{i}] triangles"))
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
    if not (shape[1] and shape[2]):   # nothing drawn, so nothing checked by the kernel
        tris = [as_triangles(t, len(v), f"meshes[{b}] triangles") for b, (v, t) in enumerate(zip(verts, tris))]
    if _raster.HAVE_OPENMP or threads == 1:
        bad = _raster.rasterize_many(verts, tris, **part(0, len(verts)), num_threads=threads)
    else:   # no OpenMP: the kernels release the GIL, so plain threads run in parallel
        def one(b):
            return _raster.rasterize_many(verts[b:b + 1], tris[b:b + 1], **part(b, b + 1), num_threads=1)[0]
        with ThreadPoolExecutor(threads) as pool:
            bad = list(pool.map(one, range(len(verts))))
    for b, row in enumerate(bad):
        if row >= 0:
            raise_bad_triangle(tris[b], int(row), len(verts[b]), f"meshes[{b}] triangles")
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
