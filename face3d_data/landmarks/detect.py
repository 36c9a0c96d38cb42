"""Face detection and 68-point landmarks (dlib by default, FAN optionally).

All coordinates are in the canonical image frame (0-based, pixel centres at integers, x right,
y down). dlib's own coordinates are already in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d_data.landmarks import dlib_models
from face3d_data.landmarks.align import five_from_68

__all__ = [
    "FaceBox", "detect_faces", "landmarks68", "landmarks5", "detect_landmarks68", "box_from_points5",
    "NoFaceError",
]

METHODS = ("dlib", "fan")
ORDERS = ("largest", "score")


class NoFaceError(ValueError):
    """No face (above the score threshold) in the image."""


@dataclass(frozen=True)
class FaceBox:
    """A face box, canonical frame; ``left..right`` and ``top..bottom`` are inclusive pixel indices.

    ``score`` is the detector's confidence (dlib HOG: SVM margin, 0 = its default threshold;
    ``nan`` for a box derived from given points).
    """

    left: float
    top: float
    right: float
    bottom: float
    score: float = float("nan")

    @property
    def width(self) -> float:
        return self.right - self.left + 1

    @property
    def height(self) -> float:
        return self.bottom - self.top + 1

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0)

    def to_dlib(self):
        import dlib

        return dlib.rectangle(int(round(self.left)), int(round(self.top)),
                              int(round(self.right)), int(round(self.bottom)))


def _check_image(image_rgb) -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image_rgb: expected an (H, W, 3) uint8 RGB array, got shape {image.shape} {image.dtype}"
        )
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image_rgb: image too small ({image.shape[1]}x{image.shape[0]})")
    return np.ascontiguousarray(image)


def detect_faces(image_rgb: np.ndarray, *, upsample: int = 1, min_score: float = 0.5,
                 order: str = "largest") -> list[FaceBox]:
    """Faces found by dlib's HOG detector.

    Args:
        image_rgb: (H, W, 3) uint8 RGB (a (H, W) grayscale array is accepted too).
        upsample: times the image is upsampled by 2 before detection (finds faces smaller than
            ~80 px at 0, ~40 px at 1; each step costs ~4x).
        min_score: boxes scoring below this are dropped (0 = dlib's default threshold; higher is
            stricter, negative keeps weaker detections).
        order: ``"largest"`` (largest box first; ties by score) or ``"score"`` (most confident first).
    Returns:
        list of :class:`FaceBox`, canonical frame, in the requested order (empty when none).
    """
    image = _check_image(image_rgb)
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
    if int(upsample) < 0:
        raise ValueError(f"upsample: expected >= 0, got {upsample}")
    rects, scores, _ = dlib_models.face_detector().run(image, int(upsample), float(min(min_score, 0.0)))
    boxes = [
        FaceBox(float(r.left()), float(r.top()), float(r.right()), float(r.bottom()), float(s))
        for r, s in zip(rects, scores)
        if s >= min_score
    ]
    if order == "largest":
        boxes.sort(key=lambda b: (-b.area, -b.score))
    else:
        boxes.sort(key=lambda b: (-b.score, -b.area))
    return boxes


def _shape_to_array(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def landmarks68(image_rgb: np.ndarray, box: FaceBox, method: str = "dlib", *,
                fan_weights=None) -> np.ndarray:
    """68 iBUG landmarks of the face in ``box``.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        box: the face box, canonical frame (from :func:`detect_faces` or :func:`box_from_points5`).
        method: ``"dlib"`` (the 68-point predictor of ``face_recognition_models``; trained on iBUG
            300-W, non-commercial licence) or ``"fan"`` (face-alignment, weights from the local
            folder ``fan_weights`` only).
    Returns:
        (68, 2) float64, canonical frame, iBUG order.
    """
    image = _check_image(image_rgb)
    if method == "dlib":
        return _shape_to_array(dlib_models.shape_predictor(68)(image, box.to_dlib()))
    if method == "fan":
        from face3d_data.landmarks.fan import fan_landmarks68

        return fan_landmarks68(image, box, fan_weights)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def landmarks5(image_rgb: np.ndarray, box: FaceBox, method: str = "dlib", *,
               fan_weights=None) -> np.ndarray:
    """The Deep3DFaceRecon 5 points of the face in ``box``.

    The 5 points are derived from the 68 (:func:`five_from_68`), so that they mean exactly what
    Deep3DFaceRecon's ``detections/`` files mean (eye centres, nose tip, mouth corners). dlib's own
    5-point model marks eye corners and the base of the nose, and no mouth corners, so it cannot
    produce them.

    Returns:
        (5, 2) float64, canonical frame: [left eye, right eye, nose, mouth left, mouth right]
        ("left" = smaller x in the image).
    """
    return five_from_68(landmarks68(image_rgb, box, method, fan_weights=fan_weights))


def detect_landmarks68(image_rgb: np.ndarray, method: str = "dlib", *, upsample: int = 1,
                       min_score: float = 0.5, order: str = "largest", fan_weights=None) -> np.ndarray:
    """Detect faces and return the 68 landmarks of the first one (see :func:`detect_faces`).

    Raises:
        NoFaceError (a ValueError): no face scored ``min_score`` or more.
    """
    boxes = detect_faces(image_rgb, upsample=upsample, min_score=min_score, order=order)
    if not boxes:
        raise NoFaceError(f"image_rgb: no face found (HOG detector, upsample={upsample}, min_score={min_score})")
    return landmarks68(image_rgb, boxes[0], method, fan_weights=fan_weights)


# A dlib-HOG-like square box from the 5 points: with d the distance from the eye midpoint to the
# mouth midpoint, side = _BOX_SIDE * d and centre = centroid + d * (_BOX_SHIFT[0] * face-right +
# _BOX_SHIFT[1] * face-down). Calibrated on HOG detections of the astronaut photo at 16 scales,
# shifts and rotations (mean side 2.51 d, centre 0.05 d below the centroid; the 68 landmarks from
# either box differ by 0.1-0.6 px on average).
_BOX_SIDE = 2.5
_BOX_SHIFT = (0.0, 0.05)


def box_from_points5(points5: np.ndarray) -> FaceBox:
    """A face box resembling dlib's HOG detections, from the 5 points of a ``detections/`` file.

    Used to run the 68-point predictor without running the detector.

    Args:
        points5: (5, 2) canonical frame, Deep3DFaceRecon order.
    Returns:
        :class:`FaceBox` (score ``nan``), canonical frame.
    """
    p = np.asarray(points5, dtype=np.float64)
    if p.shape != (5, 2):
        raise ValueError(f"points5: expected shape (5, 2), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("points5: contains NaN/inf")
    eyes = p[:2].mean(axis=0)
    mouth = p[3:].mean(axis=0)
    d = float(np.linalg.norm(mouth - eyes))
    if d < 1.0:
        raise ValueError(f"points5: eyes and mouth coincide (distance {d:.3g} px)")
    # The shift turns with the face: its "down" axis runs from the eyes to the mouth.
    down = (mouth - eyes) / d
    right = np.array([down[1], -down[0]])
    centre = p.mean(axis=0) + d * (_BOX_SHIFT[0] * right + _BOX_SHIFT[1] * down)
    half = _BOX_SIDE * d / 2.0
    return FaceBox(centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
