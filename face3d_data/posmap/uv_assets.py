"""PRNet's UV assets, generated from any model's UVs and regions at any resolution.

UV texel frame: a model UV ``(u, v)`` in [0, 1] (u right, v up, the ``BFM_UV`` convention) lands on
texel ``(u_px, v_px) = (u·(R-1), (R-1) - v·(R-1))`` of an ``R × R`` map: column u_px, row v_px,
texel centres at integer coordinates (the canonical image frame applied to the UV map).

The model mesh is rasterised once in that frame (z = 0 everywhere, so ties keep the earlier
triangle, as in face3d); every position map is then an interpolation over this fixed raster.

Assets (``docs/prnet.md`` for the files):

- ``face_mask`` (R, R) bool: texels covered by the mesh whose nearest vertex (largest barycentric
  weight) is not in the ``neck`` region. Models without regions count every covered texel.
- ``weight_mask`` (R, R) uint8: per-texel training weight. Each covered texel gets the level of
  its nearest vertex's region; texels of the 68 keypoints get the ``landmarks`` level; uncovered
  texels get 0. Default levels: landmarks 16, eyes/nose/mouth 4, rest of the face 3, neck 0 —
  the PRNet paper's ratio 16 : 4 : 3 : 0 (68 keypoints : eyes, nose, mouth : other face
  area : neck), with neck 0 as the paper says rather than the 48 of the released PNG.
- ``kpt_ind`` (2, 68) int64: row 0 = u (column), row 1 = v (row) of the texel nearest each
  landmark vertex (rounded); keypoint i of a position map is ``pos[kpt_ind[1, i], kpt_ind[0, i]]``.
- ``kpt_uv`` (2, 68) float64: the exact texel coordinates of the landmark vertices (same rows).
- ``kpt_weights`` :class:`~face3d_data.posmap.keypoint_weights.KeypointWeights`: per keypoint, the
  texels and weights that reproduce the landmark vertex exactly from any map rendered over this
  raster (bilinear at ``kpt_uv`` where the resolution is too low to determine it).
- ``face_ind`` (K,) int64: row-major flat indices ``v·R + u`` of the face-mask texels.
- ``grid_triangles`` (T, 3) int64: triangulation of the face-mask texel grid, indices into
  ``face_ind`` (so ``pos.reshape(-1, 3)[face_ind]`` plus these triangles is a mesh). Every 2×2
  cell with four mask texels gives two triangles, with three gives one; winding is
  counter-clockwise as displayed (normals towards the camera for a face seen from the front).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Mapping

import numpy as np

from face3d_data.morphable.model import REGIONS
from face3d_data.posmap.keypoint_weights import KeypointWeights, keypoint_weights
from face3d_data.render import Raster, rasterize
from face3d_data.render.raster import InterpolationPlan, interpolation_plan

#: Default weight levels: the PRNet paper's ratio 68 keypoints : eyes, nose, mouth : rest of the
#: face : neck = 16 : 4 : 3 : 0.
DEFAULT_WEIGHT_LEVELS = {"eyes": 4, "nose": 4, "mouth": 4, "face": 3, "neck": 0, "landmarks": 16}

#: The files :func:`write_uv_assets` writes (PRNet's ``Data/uv-data`` plus exact decoding data).
ASSET_FILES = ("uv_face_mask.png", "uv_weight_mask.png", "uv_kpt_ind.txt", "uv_kpt_uv.txt",
               "uv_kpt_weights.npz", "face_ind.txt", "triangles.txt", "uv_assets.json")

_NO_REGION = 255  # region_map value of uncovered texels


def uv_to_texels(uv: np.ndarray, resolution: int) -> np.ndarray:
    """Model UVs (N, 2) in [0, 1] (u right, v up) → (N, 2) float64 texel coordinates (col, row)."""
    uv = np.asarray(uv, dtype=np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise ValueError(f"uv must have shape (N, 2), got {uv.shape}")
    last = float(resolution - 1)
    return np.stack([uv[:, 0] * last, last - uv[:, 1] * last], axis=1)


def check_weight_levels(levels: Mapping[str, int] | None) -> dict[str, int]:
    """:data:`DEFAULT_WEIGHT_LEVELS` with the overrides in ``levels`` (integers 0..255).

    Raises:
        ValueError: not a mapping, an unknown level name or a bad value.
    """
    if levels is not None and not isinstance(levels, Mapping):
        raise ValueError(f"weight_levels: expected a mapping, got {levels!r}")
    merged = dict(DEFAULT_WEIGHT_LEVELS)
    for name, value in (levels or {}).items():
        if name not in DEFAULT_WEIGHT_LEVELS:
            raise ValueError(f"weight_levels: unknown level {name!r} "
                             f"(expected {sorted(DEFAULT_WEIGHT_LEVELS)})")
        if not float(value).is_integer() or not 0 <= int(value) <= 255:
            raise ValueError(f"weight_levels[{name!r}] must be an integer in 0..255, got {value!r}")
        merged[name] = int(value)
    return merged


@dataclass(frozen=True)
class UVAssets:
    """Everything needed to render and read position maps of one model at one resolution.

    Attributes:
        resolution: R, the side of the square UV map in texels.
        triangles: (M, 3) int32 model triangles (the UV raster refers to them).
        raster: the model mesh rasterised in the UV texel frame ((R, R) fields).
        region_map: (R, R) uint8 region code of each texel's nearest vertex, 255 if uncovered.
        face_mask: (R, R) bool.
        weight_mask: (R, R) uint8.
        weight_levels: the levels used for ``weight_mask``.
        kpt_ind: (2, 68) int64 (u row, v row).
        kpt_uv: (2, 68) float64 exact texel coordinates of the landmark vertices.
        kpt_weights: exact decoding weights of the 68 keypoints (:func:`keypoint_weights`).
        face_ind: (K,) int64.
        grid_triangles: (T, 3) int64 indices into ``face_ind``.
        face_vertices: (F,) int64 vertices of the triangles covering face-mask texels: the
            vertices whose minimum z is shifted to 0 in a position map.
    """

    resolution: int
    triangles: np.ndarray
    raster: Raster
    region_map: np.ndarray
    face_mask: np.ndarray
    weight_mask: np.ndarray
    weight_levels: dict
    kpt_ind: np.ndarray
    kpt_uv: np.ndarray
    kpt_weights: KeypointWeights
    face_ind: np.ndarray
    grid_triangles: np.ndarray
    face_vertices: np.ndarray

    @cached_property
    def plan(self) -> InterpolationPlan:
        """``raster`` resolved to per-texel vertex ids and weights, made on first use: every
        position map of the model interpolates through it
        (:func:`~face3d_data.render.raster.interpolate_planned`)."""
        return interpolation_plan(self.raster, self.triangles)


def build_uv_assets(model, resolution: int = 256,
                    weight_levels: Mapping[str, int] | None = None) -> UVAssets:
    """Rasterise ``model``'s UV layout and derive the PRNet assets (module docstring).

    Args:
        model: a :class:`~face3d_data.morphable.MorphableModel` with ``uv`` and ``triangles``
            (``regions`` optional).
        resolution: R >= 8.
        weight_levels: overrides of :data:`DEFAULT_WEIGHT_LEVELS`.

    Raises:
        ValueError: a model without UVs or triangles, a bad resolution or level.
    """
    if isinstance(resolution, bool) or int(resolution) != resolution or int(resolution) < 8:
        raise ValueError(f"resolution must be an integer >= 8, got {resolution!r}")
    res = int(resolution)
    if getattr(model, "uv", None) is None:
        raise ValueError(f"model {getattr(model, 'name', '')!r} has no UV coordinates (model.uv)")
    if getattr(model, "triangles", None) is None or len(model.triangles) == 0:
        raise ValueError(f"model {getattr(model, 'name', '')!r} has no triangles")
    levels = check_weight_levels(weight_levels)
    texels = uv_to_texels(model.uv, res)
    uv_vertices = np.zeros((len(texels), 3), np.float32)
    uv_vertices[:, :2] = texels
    triangles = np.ascontiguousarray(model.triangles, dtype=np.int32)
    raster = rasterize(uv_vertices, triangles, res, res)
    covered = raster.triangle_id >= 0

    corner = np.argmax(raster.barycentric, axis=-1)
    tri_of_texel = triangles[np.where(covered, raster.triangle_id, 0)]
    nearest = np.take_along_axis(tri_of_texel, corner[..., None], axis=-1)[..., 0]
    regions = (np.asarray(model.regions, np.uint8) if getattr(model, "regions", None) is not None
               else np.full(model.n_vertices, REGIONS["face"], np.uint8))
    region_map = np.where(covered, regions[nearest], _NO_REGION).astype(np.uint8)
    face_mask = covered & (region_map != REGIONS["neck"])

    weight_mask = np.zeros((res, res), np.uint8)
    for name, code in REGIONS.items():
        weight_mask[region_map == code] = levels[name]
    kpt_uv = np.ascontiguousarray(texels[model.landmarks].T)
    kpt_ind = np.clip(np.rint(kpt_uv), 0, res - 1).astype(np.int64)
    weight_mask[kpt_ind[1], kpt_ind[0]] = levels["landmarks"]

    face_ind = np.flatnonzero(face_mask).astype(np.int64)
    face_vertices = np.unique(triangles[raster.triangle_id[face_mask]]).astype(np.int64)
    if face_vertices.size == 0:
        raise ValueError("the model's UV layout covers no face texel at this resolution")
    return UVAssets(res, triangles, raster, region_map, face_mask, weight_mask, levels,
                    np.ascontiguousarray(kpt_ind), kpt_uv,
                    keypoint_weights(raster, triangles, model.landmarks, kpt_uv), face_ind,
                    triangulate_mask(face_mask), face_vertices)


def triangulate_mask(mask: np.ndarray) -> np.ndarray:
    """Triangulate the texel grid restricted to ``mask``.

    Args:
        mask: (R, C) bool.

    Returns:
        (T, 3) int64 indices into ``np.flatnonzero(mask)``; two triangles per 2×2 cell whose four
        texels are in the mask, one per cell with three; counter-clockwise as displayed.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    rows, cols = mask.shape
    index = np.full(mask.shape, -1, np.int64)
    index[mask] = np.arange(int(mask.sum()))
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()   # (y, x), (y, x+1)
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()     # (y+1, x), (y+1, x+1)
    ina, inb, inc, ind = a >= 0, b >= 0, c >= 0, d >= 0
    full = ina & inb & inc & ind
    parts = [
        np.stack([a, c, b], 1)[full | (ina & inb & inc & ~ind)],   # upper-left triangle
        np.stack([b, c, d], 1)[full | (~ina & inb & inc & ind)],   # lower-right triangle
        np.stack([a, c, d], 1)[ina & ~inb & inc & ind],            # cell missing (y, x+1)
        np.stack([a, d, b], 1)[ina & inb & ~inc & ind],            # cell missing (y+1, x)
    ]
    return np.concatenate(parts).astype(np.int64).reshape(-1, 3)


def write_uv_assets(folder, assets: UVAssets, model_name: str = "") -> list[str]:
    """Write the files of :data:`ASSET_FILES` for ``assets`` (atomic, deterministic bytes).

    Files: ``uv_face_mask.png`` (R, R) {0, 255}; ``uv_weight_mask.png`` (R, R) the weight levels;
    ``uv_kpt_ind.txt`` 2×68 integers (row 0 = column u, row 1 = row v, PRNet's format);
    ``uv_kpt_uv.txt`` 2×68 exact texel coordinates; ``uv_kpt_weights.npz`` (``texels`` (68, J)
    flat indices ``v·R + u``, ``weights`` (68, J), ``exact`` (68,), ``resolution``);
    ``face_ind.txt`` the flat face-mask texel indices; ``triangles.txt`` (T, 3) into face_ind;
    ``uv_assets.json`` (model name, resolution, levels, counts, UV frame).

    Args:
        folder: a folder, or a callable ``name -> path`` (e.g. a stage context's ``path``).
    Returns:
        the names written (:data:`ASSET_FILES`).
    """
    import json
    import os

    from face3d_data.io import save_npz, write_image, write_text

    path = folder if callable(folder) else (lambda n: os.path.join(folder, n))

    def gray_png(name, mask):
        write_image(path(name), np.repeat(np.asarray(mask, np.uint8)[:, :, None], 3, axis=2))

    gray_png("uv_face_mask.png", assets.face_mask.astype(np.uint8) * 255)
    gray_png("uv_weight_mask.png", assets.weight_mask)
    write_text(path("uv_kpt_ind.txt"), "\n".join(" ".join(str(int(v)) for v in row)
                                                 for row in assets.kpt_ind) + "\n")
    write_text(path("uv_kpt_uv.txt"), "\n".join(" ".join(f"{v:.6f}" for v in row)
                                                for row in assets.kpt_uv) + "\n")
    weights = assets.kpt_weights
    save_npz(path("uv_kpt_weights.npz"), {
        "texels": weights.texels, "weights": weights.weights, "exact": weights.exact,
        "resolution": np.int64(weights.resolution)})
    write_text(path("face_ind.txt"), "".join(f"{int(i)}\n" for i in assets.face_ind))
    write_text(path("triangles.txt"), "".join(f"{a} {b} {c}\n" for a, b, c in
                                              assets.grid_triangles.tolist()))
    info = {"model": model_name, "resolution": assets.resolution,
            "weight_levels": assets.weight_levels, "face_texels": int(assets.face_ind.size),
            "triangles": int(len(assets.grid_triangles)),
            "exact_keypoints": int(weights.exact.sum()),
            "uv_frame": "u_px = u*(R-1), v_px = (R-1) - v*(R-1); texel centres at integers"}
    write_text(path("uv_assets.json"), json.dumps(info, indent=2, sort_keys=True) + "\n")
    return list(ASSET_FILES)
