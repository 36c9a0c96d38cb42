"""A differentiable renderer for torch in the style of nvdiffrast: rasterize, then interpolate.

``rasterize`` finds, per pixel, the visible triangle and its barycentrics; it is not
differentiable. ``interpolate`` recomputes the barycentrics in torch from the triangle ids and the
vertex positions, so the result is differentiable with respect to both the vertex positions and
the per-vertex attributes (no antialiasing: silhouettes carry no gradient, as in Deep3DFaceRecon).

Vertices are either
- (B, N, 3) in the canonical image frame (0-based pixels, x right, y down, pixel centres at
  integers, z larger = closer), as everywhere else in face3d-data; or
- (B, N, 4) homogeneous clip coordinates as nvdiffrast takes them: pixel row i, column j has its
  centre at x_ndc = (2j + 1) / W - 1, y_ndc = (2i + 1) / H - 1 (row 0 at y_ndc = -1), smaller
  z_ndc = closer; barycentrics are then perspective-correct.

Backends, one switch (``backend=``):
- ``"cpu"``: the Cython z-buffer of :mod:`face3d_data.render` (tensors moved to the CPU);
- ``"cuda"``: pure torch (any device, meant for GPUs): every triangle's bounding-box pixels are
  tested with the same float64 edge functions and the z-buffer is a ``scatter_reduce`` (amax) of
  packed ``depth | triangle`` int64 keys; same semantics as the CPU kernel;
- ``"nvdiffrast"``: ``nvdiffrast.torch.RasterizeCudaContext`` (NVIDIA's licence is
  non-commercial: see docs/rendering.md); its fill rule and sub-pixel snapping differ slightly;
- ``"auto"``: nvdiffrast when importable and the tensors are on CUDA, else ``"cuda"`` for CUDA
  tensors, else ``"cpu"``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

BACKENDS = ("auto", "cpu", "cuda", "nvdiffrast")


class TorchRaster(NamedTuple):
    """triangle_id: (B, H, W) int64, -1 = background; barycentric: (B, H, W, 3) float32 (not
    differentiable; perspective-correct for clip-space input); depth: (B, H, W) float32 in the
    canonical convention (larger = closer; -z_ndc for clip input), -inf on background."""
    triangle_id: torch.Tensor
    barycentric: torch.Tensor
    depth: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, H, W) bool, True where a triangle covers the pixel."""
        return self.triangle_id >= 0


def _check(vertices: torch.Tensor, triangles: torch.Tensor, resolution):
    if not isinstance(vertices, torch.Tensor) or vertices.ndim != 3 or vertices.shape[-1] not in (3, 4):
        raise ValueError(f"vertices: expected a (B, N, 3) or (B, N, 4) tensor, got "
                         f"{getattr(vertices, 'shape', type(vertices))}")
    if not isinstance(triangles, torch.Tensor) or triangles.ndim != 2 or triangles.shape[1] != 3 \
            or triangles.is_floating_point():
        raise ValueError(f"triangles: expected an (M, 3) integer tensor, got "
                         f"{getattr(triangles, 'shape', type(triangles))}")
    n = vertices.shape[1]
    if triangles.numel() and (int(triangles.min()) < 0 or int(triangles.max()) >= n):
        bad = ((triangles < 0) | (triangles >= n)).nonzero()[0].tolist()
        raise ValueError(f"triangles[{bad[0]}, {bad[1]}] = {int(triangles[bad[0], bad[1]])} is out "
                         f"of range for {n} vertices")
    try:
        h, w = (int(r) for r in resolution)
    except (TypeError, ValueError):
        raise ValueError(f"resolution: expected (height, width), got {resolution!r}") from None
    if h < 0 or w < 0:
        raise ValueError(f"resolution: expected non-negative sizes, got {resolution!r}")
    return h, w


def to_image_frame(vertices: torch.Tensor, resolution) -> torch.Tensor:
    """(B, N, 4) clip coordinates -> (B, N, 3) canonical image frame (z = -z_ndc); (B, N, 3) as is.

    Differentiable. Vertices with w <= 0 (behind the camera) become NaN and draw nothing.
    """
    if vertices.shape[-1] == 3:
        return vertices
    h, w = (int(r) for r in resolution)
    wc = vertices[..., 3:4]
    ndc = vertices[..., :3] / torch.where(wc > 0, wc, torch.full_like(wc, float("nan")))
    return torch.stack([(ndc[..., 0] + 1) * (w / 2) - 0.5, (ndc[..., 1] + 1) * (h / 2) - 0.5,
                        -ndc[..., 2]], -1)


def _perspective_correct(bary: torch.Tensor, ids: torch.Tensor, triangles: torch.Tensor,
                         vertices: torch.Tensor) -> torch.Tensor:
    """Screen-space barycentrics -> perspective-correct ones (clip input only)."""
    if vertices.shape[-1] != 4:
        return bary
    inv_w = 1.0 / _gather_vertices(vertices[..., 3:4], ids, triangles)[..., 0]    # (B,H,W,3)
    weighted = bary * inv_w
    total = weighted.sum(-1, keepdim=True)
    return torch.where(total != 0, weighted / torch.where(total != 0, total, torch.ones_like(total)),
                       bary)


def _gather_vertices(values: torch.Tensor, ids: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """values (B, N, C), ids (B, H, W) -> (B, H, W, 3, C) values of each pixel's triangle corners."""
    b = values.shape[0]
    corners = triangles.to(values.device).long()[ids.clamp(min=0)]                 # (B,H,W,3)
    batch = torch.arange(b, device=values.device).view(b, 1, 1, 1)
    return values[batch, corners]


def _raster_cpu(image: torch.Tensor, triangles: torch.Tensor, h: int, w: int):
    from face3d_data.render.raster import rasterize_batch
    verts = image.detach().to("cpu", torch.float32).numpy()
    tri = triangles.detach().cpu().numpy()
    r = rasterize_batch([(v, tri) for v in verts], h, w)
    return (torch.from_numpy(r.triangle_id.astype(np.int64)), torch.from_numpy(r.barycentric),
            torch.from_numpy(r.depth))


def _raster_torch(image: torch.Tensor, triangles: torch.Tensor, h: int, w: int, chunk: int = 1 << 22):
    """Pure-torch z-buffer with the CPU kernel's semantics (float64 edge functions)."""
    device = image.device
    bsz = image.shape[0]
    ids_out = torch.full((bsz, h * w), -1, dtype=torch.int64, device=device)
    bary_out = torch.zeros((bsz, h * w, 3), dtype=torch.float32, device=device)
    depth_out = torch.full((bsz, h * w), float("-inf"), dtype=torch.float32, device=device)
    if triangles.shape[0] == 0 or h == 0 or w == 0:
        return ids_out.view(bsz, h, w), bary_out.view(bsz, h, w, 3), depth_out.view(bsz, h, w)
    tri = triangles.to(device).long()
    p = image.detach().to(torch.float32).double()[:, tri]                           # (B,M,3,3)
    area2 = ((p[..., 1, 0] - p[..., 0, 0]) * (p[..., 2, 1] - p[..., 0, 1])
             - (p[..., 2, 0] - p[..., 0, 0]) * (p[..., 1, 1] - p[..., 0, 1]))
    negative = area2 < 0
    p = torch.where(negative[..., None, None], p[..., [0, 2, 1], :], p)          # positive winding
    x0 = p[..., 0].amin(-1).ceil().clamp(min=0)
    x1 = p[..., 0].amax(-1).floor().clamp(max=w - 1)
    y0 = p[..., 1].amin(-1).ceil().clamp(min=0)
    y1 = p[..., 1].amax(-1).floor().clamp(max=h - 1)
    ok = torch.isfinite(p).all(-1).all(-1) & (area2 != 0) & (x0 <= x1) & (y0 <= y1)
    bi, ti = ok.nonzero(as_tuple=True)
    nx = (x1 - x0 + 1)[bi, ti].long()
    ny = (y1 - y0 + 1)[bi, ti].long()
    count = nx * ny
    keys = torch.full((bsz * h * w,), torch.iinfo(torch.int64).min, dtype=torch.int64, device=device)
    starts = torch.cumsum(count, 0) - count
    total = int(count.sum()) if count.numel() else 0
    for lo in range(0, total, chunk):                   # bound the memory of the candidate list
        idx = torch.arange(lo, min(lo + chunk, total), device=device)
        owner = torch.searchsorted(starts, idx, right=True) - 1
        local = idx - starts[owner]
        b, t = bi[owner], ti[owner]
        xs = x0[b, t] + (local % nx[owner]).double()
        ys = y0[b, t] + (local // nx[owner]).double()
        q = p[b, t]                                                                 # (K,3,3)
        inside = torch.ones_like(xs, dtype=torch.bool)
        ws = []
        for a, c in ((1, 2), (2, 0), (0, 1)):
            ax, ay = q[:, a, 0] - xs, q[:, a, 1] - ys
            cx, cy = q[:, c, 0] - xs, q[:, c, 1] - ys
            wgt = ax * cy - ay * cx
            nxe = q[:, a, 1] - q[:, c, 1]
            tie = (nxe > 0) | ((nxe == 0) & (q[:, c, 0] - q[:, a, 0] > 0))
            inside &= (wgt > 0) | ((wgt == 0) & tie)
            ws.append(wgt)
        bary = torch.stack(ws, -1) / area2[b, t].abs()[:, None]
        z = (bary[:, 0] * q[:, 0, 2] + bary[:, 1] * q[:, 1, 2] + bary[:, 2] * q[:, 2, 2]).float()
        b, t, xs, ys, z = b[inside], t[inside], xs[inside].long(), ys[inside].long(), z[inside]
        # order-preserving int32 image of the float32 depth, then the triangle (earlier wins ties)
        zi = z.view(torch.int32).long()
        zi = torch.where(zi < 0, -(zi & 0x7FFFFFFF) - 1, zi)
        key = (zi << 32) | (0x7FFFFFFF - t)
        keys.scatter_reduce_(0, (b * h + ys) * w + xs, key, reduce="amax")
    keys = keys.view(bsz, h * w)
    hit = keys != torch.iinfo(torch.int64).min
    tri_id = torch.where(hit, 0x7FFFFFFF - (keys & 0xFFFFFFFF), torch.full_like(keys, -1))
    ids_out = tri_id.view(bsz, h, w)
    # barycentrics and depth of the winners, recomputed exactly as above
    image64 = image.detach().to(torch.float32).double()
    bary = _screen_barycentrics(image64, ids_out, tri)
    corners_z = _gather_vertices(image64[..., 2:3], ids_out, tri)[..., 0]
    z = (bary[..., 0] * corners_z[..., 0] + bary[..., 1] * corners_z[..., 1]
         + bary[..., 2] * corners_z[..., 2]).float()
    mask = ids_out >= 0
    return (ids_out, torch.where(mask[..., None], bary.float(), torch.zeros_like(bary, dtype=torch.float32)),
            torch.where(mask, z, torch.full_like(z, float("-inf"))))


def _screen_barycentrics(image: torch.Tensor, ids: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) barycentrics of each pixel centre in its triangle, from image-frame vertices
    (B, N, >=2); differentiable w.r.t. ``image``; 0 on background."""
    bsz, h, w = ids.shape
    corners = _gather_vertices(image[..., :2], ids, triangles)                        # (B,H,W,3,2)
    ys, xs = torch.meshgrid(torch.arange(h, device=image.device, dtype=image.dtype),
                            torch.arange(w, device=image.device, dtype=image.dtype), indexing="ij")
    d = corners - torch.stack([xs, ys], -1)[None, :, :, None, :]                      # a - p
    ws = []
    for a, c in ((1, 2), (2, 0), (0, 1)):
        ws.append(d[..., a, 0] * d[..., c, 1] - d[..., a, 1] * d[..., c, 0])
    wsum = torch.stack(ws, -1)
    area = wsum.sum(-1, keepdim=True)
    mask = (ids >= 0)[..., None] & (area != 0)
    return torch.where(mask, wsum / torch.where(mask, area, torch.ones_like(area)), torch.zeros_like(wsum))


def _raster_nvdiffrast(vertices: torch.Tensor, triangles: torch.Tensor, h: int, w: int):
    import nvdiffrast.torch as dr
    global _NV_CONTEXT
    if _NV_CONTEXT is None:
        _NV_CONTEXT = dr.RasterizeCudaContext(device=vertices.device)
    if vertices.shape[-1] == 3:     # image frame -> clip space, w = 1, depth range mapped to [-0.99, 0.99]
        z = vertices[..., 2].detach()
        finite = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        lo = finite.amin(1, keepdim=True)
        hi = finite.amax(1, keepdim=True)
        zn = 0.99 - 1.98 * (z - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
        clip = torch.stack([(vertices[..., 0] + 0.5) * (2 / w) - 1, (vertices[..., 1] + 0.5) * (2 / h) - 1,
                            zn, torch.ones_like(zn)], -1)
    else:
        clip = vertices
    rast, _ = dr.rasterize(_NV_CONTEXT, clip.detach().float().contiguous(),
                           triangles.to(vertices.device).int().contiguous(), resolution=[h, w])
    ids = rast[..., 3].long() - 1
    bary = torch.stack([rast[..., 0], rast[..., 1], 1 - rast[..., 0] - rast[..., 1]], -1)
    mask = ids >= 0
    image = to_image_frame(vertices.detach().float(), (h, w))
    bary = torch.where(mask[..., None], bary, torch.zeros_like(bary))
    zc = _gather_vertices(image[..., 2:3], ids, triangles)[..., 0]
    depth = torch.where(mask, (bary * zc).sum(-1), torch.full_like(bary[..., 0], float("-inf")))
    return ids, bary, depth


_NV_CONTEXT = None


def nvdiffrast_available() -> bool:
    """True when nvdiffrast imports and CUDA is available."""
    if not torch.cuda.is_available():
        return False
    try:
        import nvdiffrast.torch  # noqa: F401
    except Exception:
        return False
    return True


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend ``"auto"`` stands for on ``device``; checks the name."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if device.type == "cuda":
            return "nvdiffrast" if nvdiffrast_available() else "cuda"
        return "cpu"
    if backend == "nvdiffrast" and (device.type != "cuda" or not nvdiffrast_available()):
        raise ValueError("backend: 'nvdiffrast' needs nvdiffrast installed and CUDA tensors")
    return backend


def rasterize(vertices: torch.Tensor, triangles: torch.Tensor, resolution, backend: str = "auto") -> TorchRaster:
    """Visible triangle and barycentrics per pixel (not differentiable).

    Args:
        vertices: (B, N, 3) canonical image frame or (B, N, 4) clip coordinates (module docs).
        triangles: (M, 3) integer tensor shared by the batch.
        resolution: (height, width).
        backend: "auto", "cpu", "cuda" or "nvdiffrast".

    Returns:
        :class:`TorchRaster` on the vertices' device.
    """
    h, w = _check(vertices, triangles, resolution)
    kind = resolve_backend(backend, vertices.device)
    with torch.no_grad():
        if kind == "nvdiffrast":
            ids, bary, depth = _raster_nvdiffrast(vertices, triangles, h, w)
        else:
            image = to_image_frame(vertices.detach(), (h, w))
            raster = _raster_cpu if kind == "cpu" else _raster_torch
            ids, bary, depth = (x.to(vertices.device) for x in raster(image, triangles, h, w))
            bary = _perspective_correct(bary, ids, triangles, vertices.detach())
    return TorchRaster(ids, bary.float(), depth.float())


def interpolate(attributes: torch.Tensor, raster: TorchRaster, triangles: torch.Tensor,
                vertices: torch.Tensor | None = None) -> torch.Tensor:
    """Interpolate per-vertex attributes over the raster, differentiably.

    Args:
        attributes: (B, N, C) or (N, C) per-vertex values.
        raster: from :func:`rasterize`.
        triangles: (M, 3) the triangles given to :func:`rasterize`.
        vertices: the (B, N, 3|4) vertices given to :func:`rasterize`; when given, barycentrics
            are recomputed from them in torch, so gradients reach the vertex positions; when
            None, the raster's (constant) barycentrics are used.

    Returns:
        (B, H, W, C) in the attributes' dtype; 0 on background.
    """
    ids = raster.triangle_id
    bsz = ids.shape[0]
    if attributes.ndim == 2:
        attributes = attributes.unsqueeze(0).expand(bsz, -1, -1)
    if attributes.ndim != 3 or attributes.shape[0] != bsz:
        raise ValueError(f"attributes: expected (B, N, C) or (N, C) with B = {bsz}, got {tuple(attributes.shape)}")
    if vertices is None:
        bary = raster.barycentric.to(attributes.dtype)
    else:
        h, w = ids.shape[1:]
        image = to_image_frame(vertices, (h, w)).to(attributes.dtype)
        bary = _screen_barycentrics(image, ids, triangles)
        bary = _perspective_correct(bary, ids, triangles, vertices.to(attributes.dtype))
    corners = _gather_vertices(attributes, ids, triangles)                          # (B,H,W,3,C)
    out = (bary[..., None] * corners).sum(-2)
    return out * raster.mask[..., None].to(out.dtype)
