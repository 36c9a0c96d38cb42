"""The differentiable face model of R-Net (Deep3DFaceRecon): coefficients -> mesh, colours, landmarks.

Coefficient layout (per sample, sizes from the loaded model, each capped by the config):
``[id (Ki) | exp (Ke) | tex (Kt) | angles (3) | gamma (27) | translation (3)]``; with Deep3D's
BFM front model (80 / 64 / 80 modes) that is the 257-vector of Deep3DFaceRecon, with the embedded
model 40 + 13 + 15 + 33 = 101.

- Shape: coefficients in N(0,1) units (the model is converted to the ``"normalized"``
  convention), so the regulariser's weights mean what they mean in Deep3DFaceRecon.
- Units: face3d-data models are in micrometres (BFM units); Deep3DFaceRecon's camera (distance 10,
  znear 5, zfar 15) assumes decimetres, so mean and bases are divided by ``units_per_decimetre``
  (1e5) once here. The mean is re-centred on the centroid of its 68 landmark vertices: the point the
  5-point alignment template (:func:`face3d_data.landmarks.standard_landmarks_3d5`) puts at the crop
  centre, so zero coefficients render the mean face exactly where the aligned landmarks of a
  frontal mean face lie (Deep3DFaceRecon re-centres on the centroid of all front-model vertices,
  close to that point for its face-only mesh; face3d-data's models can include neck and skull).
- Pose: angles (rad) about x, y, z with ``R = Rz·Ry·Rx`` (the ``"deep3d"`` convention of
  :mod:`face3d_data.w300lp.pose`), ``v = R·shape + t`` in the world frame of
  :mod:`face3d_data.train.renderer` (x right, y up, z towards the camera, decimetres).
- Albedo: ``(tex_mean + tex_basis·δ) / 255``. Normals: area-weighted sums of the triangle normals
  around each vertex, computed on the unrotated shape, then rotated.
- Lighting: 3-band spherical harmonics, 9 coefficients per colour channel, plus a constant
  ambient 0.8 on the first one (Deep3DFaceRecon's ``init_lit``); vertex colour = irradiance ⊙ albedo.
- Masks: per-vertex **skin** flags (reflectance loss) and the **front-face** triangle subset
  (photometric mask) come from the model's ``regions`` (skin = face + nose, front = triangles with
  no neck corner), or from Deep3DFaceRecon's ``skinmask`` / ``tri_mask2`` (:func:`load_deep3d_masks`).
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from face3d_data.errors import ConfigError
from face3d_data.morphable import REGIONS
from face3d_data.train.renderer import PinholeCamera

__all__ = ["SH_CONSTANTS", "Coefficients", "FaceOutput", "RNetFaceModel", "euler_to_matrix", "load_deep3d_masks",
           "region_masks", "sh_basis"]

#: Deep3DFaceRecon's SH constants: a = (π, 2π/√3, 2π/√8), c = (1/√(4π), √3/√(4π), 3√5/√(12π))
SH_CONSTANTS = ((math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)),
                (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi),
                 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)))
AMBIENT = 0.8


class Coefficients(NamedTuple):
    """The R-Net output split into its parts, each (B, K)."""

    id: torch.Tensor
    exp: torch.Tensor
    tex: torch.Tensor
    angles: torch.Tensor
    gamma: torch.Tensor
    translation: torch.Tensor


class FaceOutput(NamedTuple):
    """vertices (B, N, 3) world (decimetres); albedo, colour (B, N, 3) in [0, 1]-ish; landmarks
    (B, 68, 2) canonical image frame of the camera; normals (B, N, 3) rotated unit normals."""

    vertices: torch.Tensor
    albedo: torch.Tensor
    colour: torch.Tensor
    landmarks: torch.Tensor
    normals: torch.Tensor


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """(B, 3) angles (x, y, z) in radians -> (B, 3, 3) ``Rz·Ry·Rx`` (applied as ``R @ p``)."""
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rx = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rz @ ry @ rx


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """(..., 3) unit normals -> (..., 9) Deep3DFaceRecon's 3-band SH basis (constants folded in)."""
    (a0, a1, a2), (c0, c1, c2) = SH_CONSTANTS
    x, y, z = normals.unbind(-1)
    return torch.stack([
        torch.full_like(x, a0 * c0), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x, a2 * c2 * x * y,
        -a2 * c2 * y * z, a2 * c2 / (2 * math.sqrt(3.0)) * (3 * z * z - 1), -a2 * c2 * x * z,
        a2 * c2 / 2 * (x * x - y * y)], -1)


def region_masks(model) -> tuple[np.ndarray, np.ndarray]:
    """(skin (N,) bool, front (M,) bool) from ``model.regions``; all True (with a warning) without regions."""
    n, m = model.n_vertices, len(model.triangles)
    if model.regions is None:
        warnings.warn(f"model {model.name!r} has no regions: every vertex counts as skin and every "
                      "triangle as front face (give skin_mask/front_triangles arrays for Deep3D's)",
                      stacklevel=2)
        return np.ones(n, bool), np.ones(m, bool)
    reg = model.regions
    skin = (reg == REGIONS["face"]) | (reg == REGIONS["nose"])
    front = (reg[model.triangles] != REGIONS["neck"]).all(1)
    return skin, front


def load_deep3d_masks(path: str, model) -> tuple[np.ndarray, np.ndarray]:
    """(skin (N,) bool, front (M,) bool over ``model.triangles``) from Deep3DFaceRecon's
    ``BFM_model_front.mat`` (``skinmask`` (1, N) flags, ``tri_mask2`` (K, 3) 1-based triangles).

    ``model`` must have the file's vertex order (the Deep3D front model loaded by ``load_model``).

    Raises:
        ConfigError: unreadable file, missing fields, or sizes / triangles that do not match the model.
    """
    from face3d_data.errors import InputError
    from face3d_data.io.mat import read_mat
    try:
        data = read_mat(path, required={"skinmask": None, "tri_mask2": (None, 3)})
    except InputError as exc:
        raise ConfigError(f"deep3d_masks: {exc}") from None
    skin = np.asarray(data["skinmask"]).reshape(-1) > 0
    if skin.shape != (model.n_vertices,):
        raise ConfigError(f"deep3d_masks: {path}: skinmask has {skin.size} flags, the model has "
                          f"{model.n_vertices} vertices")
    index = {tuple(sorted(t)): i for i, t in enumerate(np.asarray(model.triangles).tolist())}
    front = np.zeros(len(model.triangles), bool)
    missing = 0
    for t in (np.asarray(data["tri_mask2"], np.int64) - 1).tolist():
        i = index.get(tuple(sorted(t)))
        if i is None:
            missing += 1
        else:
            front[i] = True
    if missing:
        raise ConfigError(f"deep3d_masks: {path}: {missing} tri_mask2 triangles are not triangles of the model")
    return skin, front


class RNetFaceModel(nn.Module):
    """Coefficients -> world mesh, albedo, lit colours and projected landmarks (module docs).

    Args:
        model: a :class:`~face3d_data.morphable.MorphableModel` with triangles and texture.
        camera: the camera the landmarks are projected with.
        n_id, n_exp, n_tex: caps on the numbers of modes (Deep3DFaceRecon: 80, 64, 80).
        units_per_decimetre: model units per decimetre (1e5 for face3d-data's micrometre models).
        skin_mask: optional (N,) per-vertex skin flags (Deep3D's ``skinmask``), else from regions.
        front_triangles: optional (M,) bool flags or (K,) indices of front-face triangles
            (Deep3D's ``tri_mask2`` mapped onto ``model.triangles``), else from regions.
    """

    def __init__(self, model, camera: PinholeCamera | None = None, n_id: int = 80, n_exp: int = 64,
                 n_tex: int = 80, units_per_decimetre: float = 1e5, skin_mask=None, front_triangles=None):
        super().__init__()
        if model.triangles is None or len(model.triangles) == 0:
            raise ConfigError(f"model {model.name!r}: R-Net needs a mesh with triangles")
        if model.tex_mean is None:
            raise ConfigError(f"model {model.name!r}: R-Net needs a model with texture (tex_mean)")
        if not units_per_decimetre > 0:
            raise ConfigError(f"units_per_decimetre: expected > 0, got {units_per_decimetre}")
        self.camera = camera or PinholeCamera()
        norm = model.to_convention("normalized")
        self.n_id, self.n_exp = min(int(n_id), norm.n_shape), min(int(n_exp), norm.n_exp)
        self.n_tex = min(int(n_tex), norm.n_tex)
        n = norm.n_vertices
        scale = 1.0 / float(units_per_decimetre)
        mean = norm.mean.astype(np.float64)
        mean = (mean - mean[norm.landmarks].mean(0)) * scale      # origin = centroid of the 68 landmarks
        id_basis = norm.shape_basis[:, :, :self.n_id].reshape(3 * n, self.n_id) * scale
        exp_basis = norm.exp_basis[:, :, :self.n_exp].reshape(3 * n, self.n_exp) * scale
        tex_basis = norm._tex_block.reshape(n, 3, -1)[:, :, :self.n_tex].reshape(3 * n, self.n_tex) / 255.0
        self.register_buffer("mean_shape", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("id_basis", torch.tensor(id_basis, dtype=torch.float32))
        self.register_buffer("exp_basis", torch.tensor(exp_basis, dtype=torch.float32))
        self.register_buffer("tex_mean", torch.tensor(norm.tex_mean / 255.0, dtype=torch.float32))
        self.register_buffer("tex_basis", torch.tensor(tex_basis, dtype=torch.float32))
        tri = torch.tensor(norm.triangles.astype(np.int64))
        # orient triangles so that their normals point out of the face (+z on average)
        m0 = torch.tensor(mean)
        fn = torch.linalg.cross(m0[tri[:, 1]] - m0[tri[:, 0]], m0[tri[:, 2]] - m0[tri[:, 0]])
        self.normal_sign = 1.0 if float(fn[:, 2].sum()) >= 0 else -1.0
        self.register_buffer("triangles", tri)
        self.register_buffer("landmark_index", torch.tensor(norm.landmarks.astype(np.int64)))
        skin, front = region_masks(norm)
        if skin_mask is not None:
            skin = np.asarray(skin_mask).reshape(-1).astype(bool)
            if skin.shape != (n,):
                raise ConfigError(f"skin_mask: expected {n} per-vertex flags, got {skin.shape}")
        if front_triangles is not None:
            ft = np.asarray(front_triangles).reshape(-1)
            if ft.dtype == bool:
                if ft.shape != (len(tri),):
                    raise ConfigError(f"front_triangles: expected {len(tri)} flags, got {ft.shape}")
                front = ft
            else:
                front = np.zeros(len(tri), bool)
                front[ft.astype(np.int64)] = True
        if not skin.any() or not front.any():
            raise ConfigError("skin/front masks: no skin vertex or no front triangle")
        self.register_buffer("skin", torch.tensor(skin))
        self.register_buffer("front", torch.tensor(front))
        self.n_coefficients = self.n_id + self.n_exp + self.n_tex + 3 + 27 + 3

    @property
    def n_vertices(self) -> int:
        return self.mean_shape.shape[0]

    def split(self, coeffs: torch.Tensor) -> Coefficients:
        """(B, n_coefficients) -> :class:`Coefficients`."""
        sizes = (self.n_id, self.n_exp, self.n_tex, 3, 27, 3)
        if coeffs.shape[-1] != sum(sizes):
            raise ValueError(f"coeffs: expected {sum(sizes)} values per sample, got {coeffs.shape[-1]}")
        return Coefficients(*torch.split(coeffs, sizes, -1))

    def shape(self, c: Coefficients) -> torch.Tensor:
        """(B, N, 3) unrotated shape (decimetres)."""
        flat = c.id @ self.id_basis.T + c.exp @ self.exp_basis.T
        return self.mean_shape + flat.view(flat.shape[0], -1, 3)

    def albedo(self, c: Coefficients) -> torch.Tensor:
        """(B, N, 3) albedo in [0, 1] units (not clipped)."""
        flat = c.tex @ self.tex_basis.T
        return self.tex_mean + flat.view(flat.shape[0], -1, 3)

    def vertex_normals(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) unit vertex normals (sum of adjacent triangle normals, normalised)."""
        tri = self.triangles
        a, b, c = shape[:, tri[:, 0]], shape[:, tri[:, 1]], shape[:, tri[:, 2]]
        fn = torch.linalg.cross(b - a, c - a) * self.normal_sign
        fn = fn / fn.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        vn = torch.zeros_like(shape)
        for k in range(3):
            vn = vn.index_add(1, tri[:, k], fn)
        return vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def forward(self, coeffs: torch.Tensor) -> FaceOutput:
        """(B, n_coefficients) float coefficients -> :class:`FaceOutput` (float32)."""
        c = self.split(coeffs.float())
        shape = self.shape(c)
        rot = euler_to_matrix(c.angles)
        vertices = shape @ rot.transpose(1, 2) + c.translation[:, None, :]
        normals = self.vertex_normals(shape) @ rot.transpose(1, 2)
        albedo = self.albedo(c)
        gamma = c.gamma.view(-1, 3, 9) + torch.tensor([AMBIENT] + [0.0] * 8, device=coeffs.device)
        irradiance = torch.einsum("bnk,bck->bnc", sh_basis(normals), gamma)
        colour = irradiance * albedo
        landmarks = self.camera.project(vertices[:, self.landmark_index])
        return FaceOutput(vertices, albedo, colour, landmarks, normals)
