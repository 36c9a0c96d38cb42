"""One PRNet training pair: the square crop and its UV position map, from a projected face.

Input is the source image and the model's vertices projected into its canonical frame (e.g.
:func:`face3d_data.w300lp.pose.project` with a 300W-LP ``Pose_Para``); the crop box comes from
the projected 68 landmark vertices (:mod:`face3d_data.posmap.crop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d_data.posmap.crop import CropBox, crop_image, crop_matrix, landmark_crop_box
from face3d_data.posmap.position_map import apply_affine, crop_vertices, render_position_map
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


def projection_affine(pose_para, image_hw) -> np.ndarray:
    """The 300W-LP projection as a (3, 4) float64 affine, model space → canonical image frame.

    ``project(v, pose_para, image_hw) == v @ A[:, :3].T + A[:, 3]`` (the projection is affine
    for a fixed pose); obtained from :func:`face3d_data.w300lp.pose.project` itself, so the
    convention has one definition. Lets the posmap path project and crop in one pass.
    """
    from face3d_data.w300lp.pose import project

    points = np.vstack([np.zeros(3), np.eye(3)])
    image = project(points, pose_para, image_hw)
    affine = np.empty((3, 4))
    affine[:, 3] = image[0]
    affine[:, :3] = (image[1:] - image[0]).T
    return affine


def make_posmap_sample(image: np.ndarray, vertices: np.ndarray, landmark_index: np.ndarray,
                       assets: UVAssets, *, projection: np.ndarray | None = None,
                       rng: np.random.Generator | None = None,
                       scale: float = 1.5, center_jitter: float = 0.1,
                       size_jitter: tuple[float, float] = (0.9, 1.1)) -> PosmapSample:
    """Crop ``image`` around the projected landmarks and render the position map.

    Args:
        image: (H, W, 3) uint8 source image, canonical frame.
        vertices: (N, 3) the model's vertices in the source canonical frame (z larger = closer),
            e.g. from :func:`face3d_data.w300lp.pose.project`; or, with ``projection``,
            model-space vertices (then only the landmarks are projected separately, and the
            projection and crop are applied to all vertices in one pass).
        landmark_index: (68,) vertex indices of the landmarks (``model.landmarks``).
        assets: :class:`UVAssets` of the same model; its resolution is the crop's.
        projection: optional (3, 4) model → canonical affine (:func:`projection_affine`).
        rng: jitter generator; None = no jitter (evaluation).
        scale, center_jitter, size_jitter: see :func:`landmark_crop_box`.
    """
    vertices = np.asarray(vertices)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"vertices must have shape (N, 3), got {vertices.shape}")
    if projection is not None:
        projection = np.asarray(projection, dtype=np.float64)
        if projection.shape != (3, 4) or not np.all(np.isfinite(projection)):
            raise ValueError(f"projection must be a finite (3, 4) affine, got shape {projection.shape}")
    res = assets.resolution
    landmarks_src = vertices[landmark_index] if projection is None else \
        apply_affine(vertices[landmark_index], np.asarray(projection, np.float64))
    box = landmark_crop_box(landmarks_src, scale=scale, rng=rng,
                            center_jitter=center_jitter, size_jitter=size_jitter)
    matrix = crop_matrix(box, res)
    in_crop = crop_vertices(vertices, matrix, projection)
    if not np.all(np.isfinite(in_crop)):
        raise ValueError("vertices: the projected vertices contain NaN/inf")
    z_min = in_crop[assets.face_vertices, 2].min()
    posmap = render_position_map(in_crop, assets)
    landmarks = in_crop[landmark_index].copy()
    landmarks[:, 2] -= z_min
    return PosmapSample(crop=crop_image(image, matrix, res), posmap=posmap, box=box,
                        matrix=matrix, landmarks=landmarks)
