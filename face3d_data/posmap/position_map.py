"""UV position maps: render, decode, store.

A position map is ``(R, R, 3) float32``: texel (row v, column u) holds the (x, y, z) of the face
surface point with that UV, in **crop pixels** (canonical frame of the R×R crop: 0-based, y down),
with z scaled like x and y and shifted so that its minimum over the face vertices
(:attr:`UVAssets.face_vertices`) is 0; larger z = closer to the camera. Texels no triangle covers
are 0.

Storage: float32 is the truth. ``float16`` is available on request; it rounds each value to 11
significant bits, i.e. an error of at most ``|value|·2⁻¹¹`` (≤ 0.125 px for values below 512,
≤ 0.0625 px below 256) — see :func:`float16_error_bound`.
"""

from __future__ import annotations

import numpy as np

from face3d_data import _raster
from face3d_data.posmap.keypoint_weights import KeypointWeights, bilinear_weights, decode_with_weights, weighted_texels
from face3d_data.posmap.uv_assets import UVAssets
from face3d_data.render.raster import interpolate_planned

STORAGE_DTYPES = ("float32", "float16")


def crop_vertices(vertices: np.ndarray, matrix: np.ndarray,
                  projection: np.ndarray | None = None) -> np.ndarray:
    """Map vertices into the crop: (N, 3) float32.

    Args:
        vertices: (N, 3) projected vertices, canonical image frame (z larger = closer); or, with
            ``projection``, model-space vertices.
        matrix: (2, 3) affine source canonical pixels → crop pixels (:func:`crop_matrix`); x, y go
            through it and z is multiplied by its scale ``sqrt(|det|)``.
        projection: optional (3, 4) affine model space → source canonical frame
            (:func:`face3d_data.posmap.sample.projection_affine`), applied first, in the same pass.

    Returns:
        (N, 3) float32 crop-frame positions (see :func:`apply_affine`).
    """
    return _crop_vertices(vertices, matrix, projection)[0]


def _crop_vertices(vertices, matrix, projection=None) -> tuple[np.ndarray, int]:
    """:func:`crop_vertices` plus the first row with a non-finite output (-1: none)."""
    v = np.asarray(vertices)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"matrix must have shape (2, 3), got {m.shape}")
    return _apply_affine(v, crop_affine(m, projection), np.float32)


def apply_affine(points: np.ndarray, affine: np.ndarray, dtype=np.float64) -> np.ndarray:
    """``points @ affine[:, :3].T + affine[:, 3]`` for (N, 3) points and a (3, 4) affine.

    Evaluated in float64, per output column ``((x·a0 + y·a1) + z·a2) + a3`` (no BLAS, no fused
    multiply-add, so the result does not depend on the thread count or the CPU), and stored as
    ``dtype``. float32/float64 points and outputs go through one compiled pass
    (``face3d_data._raster.affine_into``); other dtypes through :func:`_apply_affine_numpy`, the
    same arithmetic in numpy (the reference the kernel is tested against bit for bit).
    """
    return _apply_affine(points, affine, dtype)[0]


_KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _apply_affine(points, affine, dtype) -> tuple[np.ndarray, int]:
    """:func:`apply_affine` plus the first row with a non-finite output (-1: none)."""
    p = points if isinstance(points, np.ndarray) else np.asarray(points)
    a = affine if isinstance(affine, np.ndarray) and affine.dtype == np.float64 \
        else np.asarray(affine, dtype=np.float64)
    out_dtype = np.dtype(dtype)
    if p.ndim != 2 or p.shape[1] != 3 or a.shape != (3, 4) or out_dtype not in _KERNEL_DTYPES:
        out = _apply_affine_numpy(points, affine, dtype)
        finite = np.isfinite(out).all(axis=tuple(range(1, out.ndim)))
        return out, (-1 if finite.all() else int(np.argmin(finite)))
    if p.dtype not in _KERNEL_DTYPES:
        p = p.astype(np.float64)   # what the numpy path's float64 columns hold
    out = np.empty(p.shape, out_dtype)
    bad = _raster.affine_into(np.ascontiguousarray(p), np.ascontiguousarray(a), out)
    return out, bad


def _apply_affine_numpy(points: np.ndarray, affine: np.ndarray, dtype=np.float64) -> np.ndarray:
    """:func:`apply_affine` in numpy, one float64 column at a time (any dtypes; the reference)."""
    n = len(points)
    columns = np.empty((3, n))
    columns[:] = np.asarray(points).T
    out = np.empty(points.shape, dtype)
    acc, term = np.empty(n), np.empty(n)
    for i in range(3):  # ((x·a0 + y·a1) + z·a2) + a3, in float64, without temporaries
        np.multiply(columns[0], affine[i, 0], out=acc)
        acc += np.multiply(columns[1], affine[i, 1], out=term)
        acc += np.multiply(columns[2], affine[i, 2], out=term)
        acc += affine[i, 3]
        out[:, i] = acc
    return out


def crop_affine(matrix: np.ndarray, projection: np.ndarray | None = None) -> np.ndarray:
    """(3, 4) float64 affine that :func:`crop_vertices` applies: ``projection`` (identity when
    None) followed by the crop ``matrix`` on x, y and its scale on z."""
    p = np.eye(3, 4) if projection is None else np.asarray(projection, dtype=np.float64)
    if p.shape != (3, 4) or not np.all(np.isfinite(p)):
        raise ValueError(f"projection must be a finite (3, 4) affine, got shape {p.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    out = np.empty((3, 4))
    out[:2] = m[:, :2] @ p[:2]
    out[:2, 3] += m[:, 2]
    out[2] = p[2] * np.sqrt(abs(np.linalg.det(m[:, :2])))
    return out


def render_position_map(vertices: np.ndarray, assets: UVAssets) -> np.ndarray:
    """Render a position map from vertices already in the crop frame.

    Args:
        vertices: (N, 3) crop-frame positions (see :func:`crop_vertices`), N = the model's.
        assets: the model's :class:`UVAssets` at the wanted resolution.

    Returns:
        (R, R, 3) float32, z shifted so that ``min(z[assets.face_vertices]) == 0``.
    """
    v = np.array(vertices, dtype=np.float32, copy=True)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError("vertices contain NaN/inf")
    _shift_face_z(v, assets)
    return _interpolate_uv(v, assets)


def _interpolate_uv(vertices: np.ndarray, assets: UVAssets) -> np.ndarray:
    """``interpolate(vertices, assets.raster, assets.triangles)`` bit for bit, through the
    assets' :attr:`~UVAssets.plan`: (R, R, 3) float32."""
    return interpolate_planned(vertices, assets.plan)


def _shift_face_z(vertices: np.ndarray, assets: UVAssets) -> np.float32:
    """Shift z of (N, 3) float32 C-contiguous finite ``vertices`` in place so that its minimum
    over ``assets.face_vertices`` is 0 (float32 subtraction, as ``v[:, 2] -= v[face, 2].min()``);
    returns the minimum subtracted."""
    z_min = _raster.shift_min_z(vertices, np.ascontiguousarray(assets.face_vertices, dtype=np.int64))
    if not (z_min != 0 and z_min == z_min):   # ±0 (numpy's choice decides the sign of a -0 z), or
        # a case the kernel leaves to numpy (empty or out-of-range indices, NaN): numpy's result
        z_min = vertices[assets.face_vertices, 2].min()
        vertices[:, 2] -= z_min
    return np.float32(z_min)


def decode_landmarks(posmap: np.ndarray, kpt: np.ndarray | KeypointWeights) -> np.ndarray:
    """Read keypoints from a position map.

    Args:
        posmap: (R, R, 3) (or (B, R, R, 3)) position map(s).
        kpt: one of
            - :attr:`UVAssets.kpt_weights` (exact): a fixed weighted sum of texels that reproduces
              the landmark vertices up to float rounding on maps rendered from the model;
            - an **integer** (2, K) array (PRNet's ``uv_kpt_ind``; row 0 = column u, row 1 =
              row v): the nearest texel, ``pos[kpt[1], kpt[0]]``;
            - a **float** (2, K) array (:attr:`UVAssets.kpt_uv`): bilinear reading at the exact
              landmark UVs (mixes triangles across surface creases).
            See ``docs/prnet.md``.

    Returns:
        (K, 3) (or (B, K, 3)) float32 positions in the crop frame.
    """
    if isinstance(kpt, KeypointWeights):
        return decode_with_weights(posmap, kpt)
    pos = np.asarray(posmap)
    ind = np.asarray(kpt)
    if pos.ndim not in (3, 4) or pos.shape[-1] != 3:
        raise ValueError(f"posmap must have shape (R, R, 3) or (B, R, R, 3), got {pos.shape}")
    if ind.ndim != 2 or ind.shape[0] != 2 or ind.dtype.kind not in "iuf":
        raise ValueError(f"kpt must be a numeric (2, K) array, got {ind.dtype} {ind.shape}")
    rows, cols = pos.shape[-3], pos.shape[-2]
    if not np.all(np.isfinite(ind)) or ind[0].min() < 0 or ind[1].min() < 0 \
            or ind[0].max() > cols - 1 or ind[1].max() > rows - 1:
        raise ValueError(f"kpt has texels outside the {rows}×{cols} map")
    if ind.dtype.kind in "iu":
        return pos[..., ind[1].astype(np.int64), ind[0].astype(np.int64), :].astype(np.float32)
    texels, weights = bilinear_weights(ind, rows, cols)
    return weighted_texels(pos, texels, weights)


def float16_error_bound(posmap: np.ndarray) -> float:
    """Largest rounding error (crop pixels) that storing ``posmap`` as float16 can introduce."""
    peak = float(np.abs(np.asarray(posmap, np.float64)).max(initial=0.0))
    return peak * 2.0 ** -11


def storage_array(posmap: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """The array to save: float32 (default, exact) or float16 (see :func:`float16_error_bound`)."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
    return np.asarray(posmap, dtype=np.float32 if dtype == "float32" else np.float16)


def preview_image(posmap: np.ndarray, max_value: float | None = None) -> np.ndarray:
    """A picture of a position map for people: (R, R, 3) uint8, x/y/z mapped to R/G/B.

    Args:
        max_value: the value shown as 255; default ``1.1·R`` (PRNet's ``MaxPos`` scale), so the
            colours are comparable across samples.
    """
    pos = np.asarray(posmap, dtype=np.float32)
    scale = 1.1 * pos.shape[0] if max_value is None else float(max_value)
    return np.clip(pos * (255.0 / scale), 0, 255).astype(np.uint8)
