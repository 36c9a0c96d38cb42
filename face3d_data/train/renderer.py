"""Deep3DFaceRecon's pinhole camera and a differentiable face renderer over :mod:`face3d_data.render.torch`.

Frames
------
- **World** (the R-Net face model's space): x right, y up, z towards the camera, decimetres
  (Deep3DFaceRecon's units; face3d-data's models are in micrometres, the R-Net face model divides
  by 1e5 once, see :mod:`face3d_data.train.rnet_face`).
- **Camera**: the camera sits at ``z = camera_distance`` on the z axis looking down -z, so the
  depth of a point is ``Z = camera_distance - z`` (> 0 in front of the camera).
- **Image**: face3d-data's canonical frame (0-based, pixel centres at integers, x right, y down).

Half-pixel convention
---------------------
Deep3DFaceRecon projects ``u = f·x/Z + c`` with ``c = 112`` on a 224 image, a frame in which pixel
``j`` spans ``[j, j + 1]`` (nvdiffrast samples column ``j`` at ``u = j + 0.5``). In the canonical
frame (pixel centre ``j`` at ``u = j``) that is

    u = f·x/Z + c - 0.5,        v = (c - 0.5) - f·y/Z

and :meth:`PinholeCamera.project` returns exactly that, so a projected landmark and the pixel
the renderer colours for the same surface point agree (tested). Deep3DFaceRecon itself compares
``f·x/Z + c`` with detector landmarks saved in a 0-based frame, a constant 0.5 px offset this
module does not reproduce.

Rendering
---------
:class:`FaceRenderer` builds homogeneous clip coordinates from the camera (OpenGL-style frustum
with ``znear``/``zfar``, ``w = Z``), rasterises them with :func:`face3d_data.render.torch.rasterize`
(``backend="auto"|"cpu"|"cuda"|"nvdiffrast"``), and interpolates per-vertex attributes with
perspective-correct barycentrics recomputed in torch from the clip coordinates, so gradients reach
the vertex positions through the barycentrics (point-sampled coverage: silhouettes carry no
gradient, as in Deep3DFaceRecon, which renders without antialiasing). Everything inside runs in
float32 (float64 when the inputs are float64, for gradient checks), with autocast disabled.

nvdiffrast (NVIDIA Source Code License, non-commercial use only) is never a dependency: it is
used only when it imports at run time and the tensors are on CUDA; otherwise ``"auto"`` picks the
pure-torch ``"cuda"`` path on GPUs and the Cython z-buffer on CPUs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from face3d_data.render.torch import BACKENDS, interpolate, rasterize, resolve_backend

__all__ = ["BACKENDS", "FaceRenderer", "PinholeCamera", "Rendered", "render_dtype"]


@dataclass(frozen=True)
class PinholeCamera:
    """Deep3DFaceRecon's camera (defaults: focal 1015, centre 112, 224² image, distance 10, znear 5, zfar 15).

    ``focal`` and ``center`` are in pixels of an ``image_size`` square image, ``center`` in
    Deep3DFaceRecon's edge-based frame (``image_size / 2`` for a centred principal point);
    ``camera_distance``, ``znear`` and ``zfar`` are in world units (decimetres).
    """

    focal: float = 1015.0
    center: float = 112.0
    image_size: int = 224
    camera_distance: float = 10.0
    znear: float = 5.0
    zfar: float = 15.0

    def __post_init__(self):
        if not (self.focal > 0 and self.image_size > 0 and 0 < self.znear < self.zfar):
            raise ValueError(f"camera: expected focal > 0, image_size > 0, 0 < znear < zfar, got {self}")

    def scaled(self, image_size: int) -> PinholeCamera:
        """The same field of view on an ``image_size`` square image (focal and centre scaled)."""
        s = image_size / self.image_size
        return replace(self, focal=self.focal * s, center=self.center * s, image_size=int(image_size))

    def depth(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (...) camera depth ``Z = camera_distance - z``."""
        return self.camera_distance - vertices[..., 2]

    def project(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (..., 2) canonical image points (module docs; differentiable)."""
        z = self.depth(vertices)
        c = self.center - 0.5
        return torch.stack([self.focal * vertices[..., 0] / z + c, c - self.focal * vertices[..., 1] / z], -1)

    def clip(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (..., 4) homogeneous clip coordinates in the convention of
        :mod:`face3d_data.render.torch` (pixel row ``i`` at ``y_ndc = (2i + 1)/H - 1``, smaller
        ``z_ndc`` = closer), consistent with :meth:`project`: ``to_image_frame(clip)[..., :2]``
        equals ``project``."""
        z = self.depth(vertices)
        size = float(self.image_size)
        k = 2.0 * self.center / size - 1.0
        n, f = self.znear, self.zfar
        x_c = (2.0 * self.focal / size) * vertices[..., 0] + k * z
        y_c = k * z - (2.0 * self.focal / size) * vertices[..., 1]
        z_c = ((f + n) / (f - n)) * z - 2.0 * f * n / (f - n)
        return torch.stack([x_c, y_c, z_c, z], -1)


class Rendered(NamedTuple):
    """Output of :class:`FaceRenderer` (H = W = ``camera.image_size``).

    mask: (B, 1, H, W) float, 1 where a triangle covers the pixel (not differentiable);
    image: (B, C, H, W) interpolated attributes, 0 on background (differentiable w.r.t. the
        attributes and the vertex positions);
    depth: (B, 1, H, W) camera depth ``Z`` of the visible surface, 0 on background (differentiable);
    triangle_id: (B, H, W) int64 index into the triangles given, -1 on background.
    """

    mask: torch.Tensor
    image: torch.Tensor
    depth: torch.Tensor
    triangle_id: torch.Tensor


def render_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32 (half/bfloat16 inputs are promoted)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


class FaceRenderer:
    """Render per-vertex attributes of world-space meshes through a :class:`PinholeCamera`.

    Args:
        camera: the camera (its ``image_size`` is the output resolution).
        backend: ``"auto"``, ``"cpu"``, ``"cuda"`` (pure torch, any device) or ``"nvdiffrast"``
            (only when importable and the tensors are on CUDA).
    """

    def __init__(self, camera: PinholeCamera | None = None, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        self.camera = camera or PinholeCamera()
        self.backend = backend

    def resolved_backend(self, device: torch.device) -> str:
        """The concrete backend used for tensors on ``device``."""
        return resolve_backend(self.backend, torch.device(device))

    def __call__(self, vertices: torch.Tensor, triangles: torch.Tensor, attributes: torch.Tensor) -> Rendered:
        """Render.

        Args:
            vertices: (B, N, 3) world coordinates (decimetres, y up, z towards the camera).
            triangles: (M, 3) integer vertex indices shared by the batch.
            attributes: (B, N, C) or (N, C) per-vertex values (colours, ...).
        Returns:
            :class:`Rendered`.
        """
        if vertices.ndim != 3 or vertices.shape[-1] != 3:
            raise ValueError(f"vertices: expected (B, N, 3), got {tuple(vertices.shape)}")
        dtype = render_dtype(vertices, attributes)
        device_type = vertices.device.type
        with torch.autocast(device_type=device_type, enabled=False):
            v = vertices.to(dtype)
            attrs = attributes.to(dtype)
            tri = triangles.to(vertices.device).long()
            clip = self.camera.clip(v)
            size = self.camera.image_size
            raster = rasterize(clip.detach(), tri, (size, size), backend=self.backend)
            z = self.camera.depth(v)[..., None]
            if attrs.ndim == 2:
                attrs = attrs.unsqueeze(0).expand(v.shape[0], -1, -1)
            both = torch.cat([attrs, z], -1)
            out = interpolate(both, raster, tri, vertices=clip)               # (B, H, W, C + 1)
            image = out[..., :-1].permute(0, 3, 1, 2)
            depth = out[..., -1:].permute(0, 3, 1, 2)
            mask = raster.mask[:, None].to(dtype)
        return Rendered(mask, image, depth, raster.triangle_id)
