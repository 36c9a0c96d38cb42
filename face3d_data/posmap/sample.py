"""One PRNet training pair: the square crop and its UV position map, from a projected face.

Input is the source image and the model's vertices projected into its canonical frame (e.g.
:func:`face3d_data.morphable.pose.project` with a 300W-LP ``Pose_Para``); the crop box comes from
the projected 68 landmark vertices (:mod:`face3d_data.posmap.crop`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d_data.posmap.crop import CropBox, crop_image, crop_matrix, landmark_crop_box
from face3d_data.posmap.position_map import crop_vertices, render_position_map
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


def make_posmap_sample(image: np.ndarray, projected: np.ndarray, landmark_index: np.ndarray,
                       assets: UVAssets, *, rng: np.random.Generator | None = None,
                       scale: float = 1.5, center_jitter: float = 0.1,
                       size_jitter: tuple[float, float] = (0.9, 1.1)) -> PosmapSample:
    """Crop ``image`` around the projected landmarks and render the position map.

    Args:
        image: (H, W, 3) uint8 source image, canonical frame.
        projected: (N, 3) the model's vertices in the source canonical frame (z larger = closer).
        landmark_index: (68,) vertex indices of the landmarks (``model.landmarks``).
        assets: :class:`UVAssets` of the same model; its resolution is the crop's.
        rng: jitter generator; None = no jitter (evaluation).
        scale, center_jitter, size_jitter: see :func:`landmark_crop_box`.
    """
    projected = np.asarray(projected)
    if projected.ndim != 2 or projected.shape[1] != 3:
        raise ValueError(f"projected must have shape (N, 3), got {projected.shape}")
    if not np.all(np.isfinite(projected)):
        raise ValueError("projected vertices contain NaN/inf")
    box = landmark_crop_box(projected[landmark_index], scale=scale, rng=rng,
                            center_jitter=center_jitter, size_jitter=size_jitter)
    res = assets.resolution
    matrix = crop_matrix(box, res)
    in_crop = crop_vertices(projected, matrix)
    z_min = in_crop[assets.face_vertices, 2].min()
    posmap = render_position_map(in_crop, assets)
    landmarks = in_crop[landmark_index].copy()
    landmarks[:, 2] -= z_min
    return PosmapSample(crop=crop_image(image, matrix, res), posmap=posmap, box=box,
                        matrix=matrix, landmarks=landmarks)
