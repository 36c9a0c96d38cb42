"""5 points from 68, alignment to the 224x224 Deep3DFaceRecon crop, and the ArcFace similarity.

Everything is in the canonical image frame (0-based, pixel centres at integers, x right, y down);
Deep3DFaceRecon does the same arithmetic on y-up points (docs/formats.md#deep3dfacerecon-alignment), which gives
the same crop because the least-squares fit is equivariant under the flip.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "ARCFACE_TEMPLATE_112",
    "FIVE_POINT_NAMES",
    "AlignTransform",
    "align_img",
    "align_transform",
    "arcface_transform",
    "five_from_68",
    "pos_fit",
    "similarity_fit",
    "standard_landmarks_3d5",
]

FIVE_POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

# ArcFace 112x112 template (insightface), canonical frame, FIVE_POINT_NAMES order.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)

# 0-based iBUG indices: eye corners (36, 39) and (42, 45), nose tip 30, mouth corners 48 and 54.
_LEFT_EYE = (36, 39)
_RIGHT_EYE = (42, 45)
_NOSE_TIP = 30
_MOUTH_CORNERS = (48, 54)

# Deep3DFaceRecon's standard landmarks are in decimetres; BFM-like model units are micrometres.
MODEL_UNITS_PER_DECIMETRE = 1e5


def _points(points, name: str, count: int, dims=(2,)) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != count or p.shape[1] not in dims:
        want = " or ".join(f"({count}, {d})" for d in dims)
        raise ValueError(f"{name}: expected shape {want}, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name}: contains NaN/inf")
    return p


def five_from_68(points68: np.ndarray) -> np.ndarray:
    """The Deep3DFaceRecon 5 points from 68 iBUG landmarks (``extract_5p``).

    Args:
        points68: (68, 2) image points or (68, 3) model points, iBUG order.
    Returns:
        (5, D) float64: [left eye = mean(36, 39), right eye = mean(42, 45), nose tip 30,
        mouth left 48, mouth right 54] (0-based indices; "left" = the eye at smaller image x).
    """
    p = _points(points68, "points68", 68, dims=(2, 3))
    return np.stack(
        [
            p[list(_LEFT_EYE)].mean(axis=0),
            p[list(_RIGHT_EYE)].mean(axis=0),
            p[_NOSE_TIP],
            p[_MOUTH_CORNERS[0]],
            p[_MOUTH_CORNERS[1]],
        ]
    )


def standard_landmarks_3d5(model=None, units_per_decimetre: float = MODEL_UNITS_PER_DECIMETRE) -> np.ndarray:
    """The standard 3D 5-point landmarks, from a Morphable Model's mean face.

    The 68 landmark vertices of the mean shape (neutral expression) are centred on their centroid
    (that point lands at the centre of the aligned crop), converted to decimetres (the units of
    Deep3DFaceRecon's ``similarity_Lm3D_all.mat``, for which ``rescale_factor=102`` was chosen),
    and reduced to 5 points with :func:`five_from_68`.

    Args:
        model: a :class:`~face3d_data.morphable.MorphableModel`; ``None`` = the built-in model.
        units_per_decimetre: model units per decimetre (1e5 for BFM-like micrometre units).
    Returns:
        (5, 3) float64, model space (x right, y up, z towards the viewer), decimetres.
    """
    if model is None:
        from face3d_data.morphable import builtin_model

        model = builtin_model()
    if not units_per_decimetre > 0:
        raise ValueError(f"units_per_decimetre: expected > 0, got {units_per_decimetre}")
    lm68 = np.asarray(model.vertices(), dtype=np.float64)[np.asarray(model.landmarks)]
    lm68 = (lm68 - lm68.mean(axis=0)) / units_per_decimetre
    return five_from_68(lm68)


def pos_fit(points2d: np.ndarray, points3d: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares scaled-orthographic fit (Deep3DFaceRecon ``POS``).

    Solves ``points2d ≈ A @ points3d.T + t`` for a general 2x3 ``A`` and ``t`` and reports
    ``s = (|A_row0| + |A_row1|) / 2``.

    Args:
        points2d: (K, 2) image points, K >= 4.
        points3d: (K, 3) model points.
    Returns:
        (t (2,) float64 = the image position of the model origin, s float64 = pixels per model unit).
    """
    p2 = np.asarray(points2d, dtype=np.float64)
    k = p2.shape[0] if p2.ndim == 2 else -1
    p2 = _points(points2d, "points2d", max(k, 4), dims=(2,))
    p3 = _points(points3d, "points3d", k, dims=(3,))
    design = np.concatenate([p3, np.ones((k, 1))], axis=1)  # (K, 4)
    solution, *_ = np.linalg.lstsq(design, p2, rcond=None)  # (4, 2): columns are the two rows
    a = solution[:3].T
    s = float((np.linalg.norm(a[0]) + np.linalg.norm(a[1])) / 2.0)
    if not s > 0:
        raise ValueError("points2d: degenerate points (zero scale)")
    return solution[3].copy(), s


@dataclass(frozen=True)
class AlignTransform:
    """The similarity that maps the original image to the aligned crop.

    ``matrix`` (2, 3) float64 maps canonical points of the original image to canonical points of
    the crop: ``q = matrix[:, :2] @ p + matrix[:, 2]`` (a uniform scale plus a shift, no rotation).
    ``scale`` is crop pixels per original pixel; ``origin`` (2,) is the image position of the
    template origin (it lands at the crop centre ``size / 2``); ``image_hw`` is the original size.
    """

    matrix: np.ndarray
    scale: float
    origin: np.ndarray
    size: int
    image_hw: tuple[int, int]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) original-image points -> (K, 2) crop points (canonical frames)."""
        p = np.asarray(points, dtype=np.float64)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def invert(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) crop points -> (K, 2) original-image points."""
        p = np.asarray(points, dtype=np.float64)
        return (p - self.matrix[:, 2]) / self.scale

    def warp(self, image: np.ndarray, interpolation: str = "cubic") -> np.ndarray:
        """Resample an image of the original size (any channels, e.g. a mask) into the crop.

        Args:
            image: (H, W) or (H, W, C), same H, W as the original; uint8 or float.
            interpolation: ``"cubic"`` (images, as Deep3DFaceRecon), ``"linear"`` (masks) or
                ``"nearest"`` (labels). Outside the image is 0.
        Returns:
            (size, size[, C]) same dtype.
        """
        flags = {"cubic": cv2.INTER_CUBIC, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}
        if interpolation not in flags:
            raise ValueError(f"interpolation: expected one of {tuple(flags)}, got {interpolation!r}")
        image = np.asarray(image)
        if image.shape[:2] != tuple(self.image_hw):
            raise ValueError(f"image: expected height, width {self.image_hw}, got {image.shape[:2]}")
        return cv2.warpAffine(image, self.matrix, (self.size, self.size), flags=flags[interpolation],
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def deep3d_trans_params(self) -> np.ndarray:
        """Deep3DFaceRecon's ``trans_params`` [w0, h0, s, t_x, t_y], with t in its y-up frame."""
        h, w = self.image_hw
        return np.array([w, h, self.scale, self.origin[0], h - 1 - self.origin[1]])


def align_transform(points5: np.ndarray, image_hw, template_3d5: np.ndarray | None = None, *,
                    target_size: int = 224, rescale_factor: float = 102.0) -> AlignTransform:
    """The crop transform of :func:`align_img`, without resampling anything.

    Args:
        points5: (5, 2) canonical frame, FIVE_POINT_NAMES order.
        image_hw: (H, W) of the original image.
        template_3d5: (5, 3) standard 3D landmarks (:func:`standard_landmarks_3d5`; ``None`` = from
            the built-in model).
        target_size: side of the square crop in pixels.
        rescale_factor: crop pixels per template unit (Deep3DFaceRecon: 102 for 224).
    """
    p5 = _points(points5, "points5", 5)
    if template_3d5 is None:
        template_3d5 = standard_landmarks_3d5()
    t3 = _points(template_3d5, "template_3d5", 5, dims=(3,))
    h, w = (int(v) for v in image_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"image_hw: expected positive height and width, got {image_hw}")
    if int(target_size) <= 0 or not rescale_factor > 0:
        raise ValueError("target_size, rescale_factor: expected positive values")
    origin, s = pos_fit(p5, t3)
    scale = float(rescale_factor) / s
    centre = target_size / 2.0
    matrix = np.array([[scale, 0.0, centre - scale * origin[0]], [0.0, scale, centre - scale * origin[1]]])
    return AlignTransform(matrix, scale, origin, int(target_size), (h, w))


def align_img(image: np.ndarray, points5: np.ndarray, template_3d5: np.ndarray | None = None, *,
              target_size: int = 224, rescale_factor: float = 102.0) -> tuple[np.ndarray, AlignTransform]:
    """Crop and scale a face to ``target_size`` the way Deep3DFaceRecon's ``align_img`` does.

    A least-squares scaled-orthographic fit (:func:`pos_fit`) of the 5 points to the standard 3D
    landmarks gives a scale ``s`` and the image position ``t`` of the template origin; the image is
    scaled by ``rescale_factor / s`` and ``t`` is put at the crop centre. One bicubic affine warp
    replaces Deep3DFaceRecon's resize-then-integer-crop (so no sub-pixel truncation).

    Args:
        image: (H, W, 3) uint8 RGB (or (H, W) / any channels).
        points5: (5, 2) canonical frame.
        template_3d5: (5, 3) standard 3D landmarks; ``None`` = from the built-in model.
    Returns:
        (aligned (target_size, target_size, C) same dtype, :class:`AlignTransform`); use
        ``transform.apply`` for landmarks and ``transform.warp(mask, "linear")`` for masks.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"image: expected (H, W) or (H, W, C), got shape {image.shape}")
    transform = align_transform(points5, image.shape[:2], template_3d5, target_size=target_size,
                                rescale_factor=rescale_factor)
    return transform.warp(image, "cubic"), transform


def similarity_fit(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares 2-D similarity (Umeyama, no reflection) mapping ``source`` onto ``target``.

    Args:
        source, target: (K, 2) corresponding points, K >= 2.
    Returns:
        (2, 3) float64 matrix M with ``target ≈ source @ M[:, :2].T + M[:, 2]``.
    """
    src = np.asarray(source, dtype=np.float64)
    k = src.shape[0] if src.ndim == 2 else -1
    src = _points(source, "source", max(k, 2))
    dst = _points(target, "target", k)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc**2).sum() / k
    if var_s <= 0:
        raise ValueError("source: all points coincide")
    cov = dc.T @ sc / k
    u, sing, vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = float((sing * d).sum() / var_s)
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def arcface_transform(points5: np.ndarray) -> np.ndarray:
    """The similarity from the 5 points to the ArcFace 112x112 template (docs/formats.md#deep3dfacerecon-alignment).

    Deep3DFaceRecon's ``estimate_norm`` applies it to the 224 crop's landmarks for the identity
    loss warp.

    Args:
        points5: (5, 2) canonical frame, FIVE_POINT_NAMES order.
    Returns:
        (2, 3) float64 matrix mapping canonical image points to the 112x112 template frame
        (use with ``cv2.warpAffine(image, M, (112, 112))``).
    """
    return similarity_fit(_points(points5, "points5", 5), ARCFACE_TEMPLATE_112)
