"""One PRNet training pair: the square crop and its UV position map, from a projected face.

Input is the source image and the model's vertices projected into its canonical frame (e.g.
:func:`face3d_data.w300lp.pose.project` with a 300W-LP ``Pose_Para``); the crop box comes from
the projected 68 landmark vertices (:mod:`face3d_data.posmap.crop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from face3d_data.posmap.crop import CropBox, crop_image, crop_matrix, landmark_crop_box
from face3d_data.posmap.position_map import _crop_vertices, _interpolate_uv, _shift_face_z, apply_affine
from face3d_data.posmap.uv_assets import UVAssets


@dataclass(frozen=True)
class PosmapSample:
    """A crop and its position map.

    Attributes:
        crop: (R, R, 3) uint8 crop of the source image.
        posmap: (R, R, 3) float32 position map (crop pixels, z min over the face = 0).
        box: the :class:`CropBox` used (with its jitter).
        matrix: (2, 3) float64 source canonical pixels → crop pixels.
        landmarks: (68, 3) float32 the projected landmark vertices in the crop frame, z shifted
            like the position map (the reference that decoded keypoints are compared with).
    """

    crop: np.ndarray
    posmap: np.ndarray
    box: CropBox
    matrix: np.ndarray
    landmarks: np.ndarray


# the origin and the three unit vectors, whose images give an affine map's columns
_UNIT_POINTS = np.vstack([np.zeros(3), np.eye(3)])
_UNIT_POINTS.flags.writeable = False


def projection_affine(pose_para, image_hw) -> np.ndarray:
    """The 300W-LP projection as a (3, 4) float64 affine, model space → canonical image frame.

    ``project(v, pose_para, image_hw) == v @ A[:, :3].T + A[:, 3]`` (the projection is affine
    for a fixed pose); obtained from :func:`face3d_data.w300lp.pose.project` itself, so the
    convention has one definition. Lets the posmap path project and crop in one pass.
    """
    from face3d_data.w300lp.pose import project

    image = project(_UNIT_POINTS, pose_para, image_hw)
    affine = np.empty((3, 4))
    affine[:, 3] = image[0]
    affine[:, :3] = (image[1:] - image[0]).T
    return affine


class CoverageError(ValueError):
    """The image covers too little of the crop region (:func:`make_posmap_sample`)."""


def image_coverage(image_hw, box: CropBox) -> float:
    """Fraction of the crop region ``box`` covered by the image's pixels (0..1).

    The image spans ``[-0.5, W - 0.5] × [-0.5, H - 0.5]`` in the canonical frame; a crop of a
    region the image does not cover is black there.
    """
    h, w = (float(v) for v in image_hw[:2])
    half = box.size / 2.0
    x0, y0 = box.center[0] - half, box.center[1] - half
    x1, y1 = box.center[0] + half, box.center[1] + half
    ox = max(0.0, min(x1, w - 0.5) - max(x0, -0.5))
    oy = max(0.0, min(y1, h - 0.5) - max(y0, -0.5))
    return float(ox * oy / max(box.size * box.size, 1e-12))


def batch_vertices(model, coefficients: list[tuple[np.ndarray, np.ndarray]],
                   group: int | Sequence[int] | None = None) -> list[np.ndarray]:
    """Model-space vertices for several (shape, exp) coefficient pairs, one product per group.

    Evaluating the (3N × K) basis is memory-bandwidth bound and the largest per-sample cost of a
    position map. The pairs are cut into consecutive groups of ``group`` (all in one group when
    None); each group is one matrix product over its distinct coefficient sets (identical sets,
    the views of one face or rotated copies, are evaluated once), and the basis is streamed once
    for all groups (:func:`face3d_data.morphable.streamed.grouped_vertices`). A pair's result
    depends only on its group's content, bit for bit, not on how many groups are evaluated
    together: the posmap stage keeps groups of 8 (its outputs are those of one product per 8
    samples) while reading the basis once per runner batch.

    Args:
        model: a :class:`~face3d_data.morphable.MorphableModel`.
        coefficients: (shape (Ks,), exp (Ke,)) float64 pairs, Ks <= n_shape, Ke <= n_exp
            (:func:`face3d_data.w300lp.model_coefficients`).
        group: pairs per product (>= 1); or the sizes of consecutive groups (summing to the
            number of pairs, zeros allowed); or None for one product over all pairs.
    Returns:
        one read-only (N, 3) float32 array per pair.
    """
    from face3d_data.morphable.streamed import grouped_vertices

    if group is None or np.ndim(group) == 0:
        if group is not None and (isinstance(group, bool) or int(group) != group or group < 1):
            raise ValueError(f"group must be a positive integer, a list of sizes or None, got {group!r}")
        size = max(1, len(coefficients) if group is None else int(group))
        sizes = [min(size, len(coefficients) - i) for i in range(0, len(coefficients), size)]
    else:
        sizes = [int(n) for n in group]
        if any(n < 0 for n in sizes) or sum(sizes) != len(coefficients):
            raise ValueError(f"group sizes {sizes} do not add up to the {len(coefficients)} pairs")
    starts = np.cumsum([0] + sizes)
    chunks = [coefficients[a:b] for a, b in zip(starts[:-1], starts[1:]) if b > a]
    plans, matrices = [], []
    for chunk in chunks:
        keys = [b"%d:%d:" % (s.size, e.size) + s.tobytes() + e.tobytes() for s, e in chunk]
        rows = {key: i for i, key in enumerate(dict.fromkeys(keys))}
        firsts = [chunk[keys.index(key)] for key in rows]
        coef = np.stack([np.pad(s, (0, model.n_shape - s.size)) for s, _ in firsts]).astype(np.float32)
        if model.n_exp:  # model.vertices(shapes, exps)'s coefficient matrix, exactly
            exps = np.stack([np.pad(e, (0, model.n_exp - e.size)) for _, e in firsts]).astype(np.float32)
            coef = np.concatenate([coef, exps], axis=1)
        plans.append((keys, rows))
        matrices.append(coef)
    out = []
    for (keys, rows), flat in zip(plans, grouped_vertices(model, matrices)):
        flat.flags.writeable = False
        out += [flat[rows[key]] for key in keys]
    return out


def make_posmap_sample(image: np.ndarray, vertices: np.ndarray, landmark_indices: np.ndarray,
                       assets: UVAssets, *, projection: np.ndarray | None = None,
                       rng: np.random.Generator | None = None,
                       scale: float = 1.5, center_jitter: float = 0.1,
                       size_jitter: tuple[float, float] = (0.9, 1.1),
                       min_coverage: float = 0.0) -> PosmapSample:
    """Crop ``image`` around the projected landmarks and render the position map.

    Args:
        image: (H, W, 3) uint8 source image, canonical frame.
        vertices: (N, 3) the model's vertices in the source canonical frame (z larger = closer),
            e.g. from :func:`face3d_data.w300lp.pose.project`; or, with ``projection``,
            model-space vertices (then only the landmarks are projected separately, and the
            projection and crop are applied to all vertices in one pass).
        landmark_indices: (68,) vertex indices of the landmarks (``model.landmarks``).
        assets: :class:`UVAssets` of the same model; its resolution is the crop's.
        projection: optional (3, 4) model → canonical affine (:func:`projection_affine`).
        rng: jitter generator; None = no jitter (evaluation).
        scale, center_jitter, size_jitter: see :func:`landmark_crop_box`.
        min_coverage: the least fraction of the crop region the image must cover
            (:func:`image_coverage`); a tiny image, or one the face lies outside of, would give
            a mostly black crop.

    Raises:
        ValueError: bad arrays; :class:`CoverageError` for an image covering less than
            ``min_coverage`` of the crop.
    """
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {vertices.shape}")
    if projection is not None:
        projection = np.asarray(projection, dtype=np.float64)
        if projection.shape != (3, 4) or not np.all(np.isfinite(projection)):
            raise ValueError(f"projection must be a finite (3, 4) affine, got shape {projection.shape}")
    res = assets.resolution
    landmarks_src = vertices[landmark_indices] if projection is None else \
        apply_affine(vertices[landmark_indices], np.asarray(projection, np.float64))
    box = landmark_crop_box(landmarks_src, scale=scale, rng=rng,
                            center_jitter=center_jitter, size_jitter=size_jitter)
    coverage = image_coverage(np.shape(image), box)
    if coverage < min_coverage:
        h, w = np.shape(image)[:2]
        raise CoverageError(f"the {w}×{h} image covers {coverage:.0%} of the {box.size:.0f} px crop region "
                         f"around the face (less than {min_coverage:.0%}): image too small or face "
                         f"outside it")
    matrix = crop_matrix(box, res)
    # one pass: project + crop, finiteness; then z shifted in place (render_position_map's
    # arithmetic without its copy and checks, which this array already passed)
    in_crop, bad = _crop_vertices(vertices, matrix, projection)
    if bad >= 0:
        raise ValueError("vertices: the projected vertices contain NaN/inf")
    _shift_face_z(in_crop, assets)
    posmap = _interpolate_uv(in_crop, assets)
    landmarks = in_crop[landmark_indices]   # z shifted like the map: the same float32 subtraction
    return PosmapSample(crop=crop_image(image, matrix, res), posmap=posmap, box=box,
                        matrix=matrix, landmarks=landmarks)
