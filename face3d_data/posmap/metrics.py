"""Checks of position maps: keypoint error (NME), holes inside the face mask, one sample's check."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Keypoint decoders of :func:`check_posmap`: exact = the assets' keypoint weights (landmark
#: vertices up to float rounding), bilinear = at the landmark UVs, nearest = PRNet's ``uv_kpt_ind``.
DECODERS = ("exact", "bilinear", "nearest")


def landmark_nme(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """Normalised mean error of 2D keypoints.

    Args:
        predicted, truth: (K, 2+) points in the same frame (only x, y are used).

    Returns:
        (nme, errors): ``mean(errors) / sqrt(w·h)`` of the truth's bounding box (the AFLW2000-3D
        normalisation), and the (K,) float64 per-point Euclidean errors.
    """
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    if p.ndim != 2 or p.shape[0] != t.shape[0] or p.shape[1] < 2 or t.ndim != 2 or t.shape[1] < 2:
        raise ValueError(f"predicted and truth must be (K, 2+) with equal K, got {p.shape}, {t.shape}")
    errors = np.linalg.norm(p[:, :2] - t[:, :2], axis=1)
    extent = t[:, :2].max(axis=0) - t[:, :2].min(axis=0)
    size = float(np.sqrt(max(extent[0] * extent[1], 1e-12)))
    return float(errors.mean() / size), errors


def posmap_defects(posmap: np.ndarray, face_mask: np.ndarray) -> tuple[int, int]:
    """(holes, non_finite): face-mask texels whose three values are all 0, and NaN/inf values."""
    pos = np.asarray(posmap)
    mask = np.asarray(face_mask, bool)
    if pos.ndim != 3 or pos.shape[:2] != mask.shape or pos.shape[2] != 3:
        raise ValueError(f"posmap must be (R, R, 3) matching face_mask {mask.shape}, got {pos.shape}")
    inside = pos[mask]
    holes = int(np.count_nonzero(np.all(inside == 0, axis=1)))
    return holes, int(pos.size - np.count_nonzero(np.isfinite(pos)))


@dataclass
class PosmapCheck:
    """One position map against its labels (crop frame, pixels).

    Attributes:
        expected: (68, 2) float64 landmarks projected from the labels, mapped into the crop.
        decoded: (68, 2) float64 keypoints read from the position map.
        holes: face-mask texels that are all 0. non_finite: NaN/inf values in the map.
    """

    expected: np.ndarray
    decoded: np.ndarray
    holes: int
    non_finite: int

    def nme(self) -> tuple[float, np.ndarray]:
        """(NME, per-point errors) of ``decoded`` against ``expected`` (:func:`landmark_nme`)."""
        return landmark_nme(self.decoded, self.expected)


def check_posmap(posmap: np.ndarray, landmarks: np.ndarray, box, assets, decode: str = "exact") -> PosmapCheck:
    """Check one position map against the projected landmarks of its sample.

    Args:
        posmap: (R, R, 3) position map in crop pixels (any float dtype).
        landmarks: (68, 3) the model's landmark vertices projected into the *source image*
            (canonical frame), e.g. :func:`face3d_data.w300lp.pose.project`.
        box: the :class:`~face3d_data.posmap.crop.CropBox` the sample was cropped with.
        assets: the :class:`~face3d_data.posmap.uv_assets.UVAssets` the map was rendered with.
        decode: one of :data:`DECODERS`.
    Raises:
        ValueError: a map of the wrong shape or an unknown decoder.
    """
    from face3d_data.posmap.crop import crop_matrix
    from face3d_data.posmap.position_map import crop_vertices, decode_landmarks

    if decode not in DECODERS:
        raise ValueError(f"decode: expected one of {DECODERS}, got {decode!r}")
    posmap = np.asarray(posmap).astype(np.float32)
    r = assets.resolution
    if posmap.shape != (r, r, 3):
        raise ValueError(f"position map has shape {posmap.shape}, expected ({r}, {r}, 3)")
    expected = crop_vertices(landmarks, crop_matrix(box, r))[:, :2]
    kpt = {"exact": assets.kpt_weights, "bilinear": assets.kpt_uv, "nearest": assets.kpt_ind}[decode]
    decoded = decode_landmarks(posmap, kpt)[:, :2]
    holes, non_finite = posmap_defects(posmap, assets.face_mask)
    return PosmapCheck(expected, decoded, holes, non_finite)
