"""Face detection and 68-point landmarks (dlib by default, FAN optionally).

Detectors (:func:`find_faces`):

- ``hog``: dlib's HOG + linear SVM frontal detector (fast: ~0.1 s per 512² image at upsample 1);
- ``cnn``: dlib's CNN (MMOD) detector from ``face_recognition_models`` (finds rotated, dark and
  turned faces HOG misses; ~2 s per 512² image on one CPU core at upsample 0, growing with the
  pixel count), run on a copy downscaled to ``max_side``;
- ``cascade``: HOG, then the CNN only on images where HOG found no box at its threshold.

All coordinates are in the canonical image frame (0-based, pixel centres at integers, x right,
y down). dlib's own coordinates are already in that frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d_data.landmarks import dlib_models
from face3d_data.landmarks.align import five_from_68

__all__ = [
    "FaceBox",
    "FaceSearch",
    "NoFaceError",
    "box_from_points5",
    "cnn_faces",
    "detect_faces",
    "detect_landmarks68",
    "find_faces",
    "hog_faces",
    "landmarks5",
    "landmarks68",
    "roll_search",
    "upright_view",
]

METHODS = ("dlib", "fan")
ORDERS = ("largest", "score")
DETECTORS = ("cascade", "hog", "cnn")


class NoFaceError(ValueError):
    """No face (above the score threshold) in the image."""


@dataclass(frozen=True)
class FaceBox:
    """A face box, canonical frame; ``left..right`` and ``top..bottom`` are inclusive pixel indices.

    ``score`` is the detector's confidence (dlib HOG: SVM margin, 0 = its default threshold;
    dlib CNN: MMOD confidence, 0 = its default threshold; ``nan`` for a box derived from given
    points). ``detector`` names its source: ``"hog"``, ``"cnn"`` or ``""`` (derived from points).
    ``roll`` (degrees) is the face's in-plane rotation, counter-clockwise as the image is shown
    (x right, y down): the box is axis-aligned in the image turned by ``-roll`` about the box
    centre, where the face is upright. 0 for the detectors' own boxes; set by the CNN roll search
    (:func:`cnn_faces`).
    """

    left: float
    top: float
    right: float
    bottom: float
    score: float = float("nan")
    detector: str = ""
    roll: float = 0.0

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

        return dlib.rectangle(round(self.left), round(self.top), round(self.right), round(self.bottom))

    def corners(self) -> np.ndarray:
        """(4, 2) corners (top-left, top-right, bottom-right, bottom-left of the upright face),
        canonical frame, turned by ``roll`` about the centre."""
        cx, cy = self.centre
        local = np.array([[self.left, self.top], [self.right, self.top], [self.right, self.bottom],
                          [self.left, self.bottom]]) - [cx, cy]
        a = np.radians(self.roll)
        # counter-clockwise on screen (y down): x' = x cos + y sin, y' = -x sin + y cos
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        return local @ rot.T + [cx, cy]


def upright_view(image: np.ndarray, box: FaceBox, side: float | None = None,
                 margin: float = 1.2) -> tuple[np.ndarray, FaceBox, np.ndarray]:
    """A square crop around ``box`` with its roll undone, so the face is upright in it.

    Args:
        image: (H, W, 3) uint8.
        box: the face (its ``roll`` is undone).
        side: the box side (px) in the crop; None keeps the image's scale.
        margin: half the crop's side, in box sides.
    Returns:
        (crop (S, S, 3) uint8, the box in the crop (roll 0), (2, 3) affine mapping crop
        coordinates back to the image), canonical frame (pixel centres: bilinear warp of centres).
    """
    import cv2

    cx, cy = box.centre
    size = max(box.width, box.height)
    scale = 1.0 if side is None else side / size
    half = max(8, round(margin * size * scale))
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), -float(box.roll), scale)
    m[:, 2] += [half - cx, half - cy]
    crop = cv2.warpAffine(image, m, (2 * half, 2 * half), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    hw, hh = (box.width - 1) * scale / 2.0, (box.height - 1) * scale / 2.0
    inner = FaceBox(half - hw, half - hh, half + hw, half + hh, box.score, box.detector)
    return crop, inner, cv2.invertAffineTransform(m)


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


def _check_detector_args(upsample, max_side) -> None:
    if isinstance(upsample, bool) or int(upsample) != upsample or upsample < 0:
        raise ValueError(f"upsample: expected an integer >= 0, got {upsample!r}")
    if max_side is not None and (int(max_side) != max_side or max_side < 32):
        raise ValueError(f"max_side: expected an integer >= 32 or None, got {max_side!r}")


def _downscaled(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """``image`` shrunk (area filter) so its longer side is at most ``max_side``, and the factor."""
    h, w = image.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return image, 1.0
    import cv2

    factor = max_side / max(h, w)
    size = (max(2, round(w * factor)), max(2, round(h * factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # the factor actually applied per axis differs from ``factor`` by rounding; use the mean
    return np.ascontiguousarray(small), (size[0] / w + size[1] / h) / 2.0


def _to_full(left, top, right, bottom, factor: float) -> tuple[float, float, float, float]:
    """Box corners from a copy scaled by ``factor`` back to the image (pixel centres map as
    ``x = (x' + 0.5) / factor - 0.5``)."""
    if factor == 1.0:
        return float(left), float(top), float(right), float(bottom)
    return tuple(float((v + 0.5) / factor - 0.5) for v in (left, top, right, bottom))


def hog_faces(image_rgb: np.ndarray, *, upsample: int = 1, threshold: float = 0.0,
              max_side: int | None = None) -> list[FaceBox]:
    """Faces found by dlib's HOG detector, largest first (ties: higher score first).

    Args:
        image_rgb: (H, W, 3) uint8 RGB (a (H, W) grayscale array is accepted too).
        upsample: times the image is doubled before detection (finds faces down to ~80 px at 0,
            ~40 px at 1; each step costs ~4x).
        threshold: boxes scoring below this SVM margin are dropped (0 = dlib's own threshold).
        max_side: detect on a copy whose longer side is at most this (None = full size); boxes
            are mapped back to the image.
    Returns:
        list of :class:`FaceBox` (``detector="hog"``), canonical frame (empty when none).
    """
    image = _check_image(image_rgb)
    _check_detector_args(upsample, max_side)
    small, factor = _downscaled(image, max_side)
    rects, scores, _ = dlib_models.face_detector().run(small, int(upsample), float(min(threshold, 0.0)))
    boxes = [FaceBox(*_to_full(r.left(), r.top(), r.right(), r.bottom(), factor), float(s), "hog")
             for r, s in zip(rects, scores) if s >= threshold]
    boxes.sort(key=lambda b: (-b.area, -b.score))
    return boxes


# The CNN (MMOD) boxes sit higher and are larger than the HOG boxes dlib's 68-point predictor was
# trained on. A CNN box of side w and centre c becomes a HOG-like box of side _CNN_SIDE * w with
# centre c + w * _CNN_SHIFT (x, y down). Calibrated on both detectors' boxes of the astronaut
# photo at 14 scales, shifts and mirrorings (mean HOG/CNN side 0.95, centre 0.11 w lower,
# horizontal shift 0.02 ± 0.05 w, i.e. none).
_CNN_SIDE = 0.95
_CNN_SHIFT = (0.0, 0.11)
#: shorter side (px, after upsampling) below which the CNN is not run: it finds faces of ~80 px
#: and up, and its convolutions reject inputs under 10 px with an error that can corrupt memory
_CNN_MIN_SIDE = 32


#: rolls (degrees) tried by the CNN roll search, and the face size (px) it works at
ROLL_CANDIDATES = (-60.0, -40.0, -20.0, 20.0, 40.0, 60.0)
_ROLL_SEARCH_SIDE = 120


def roll_search(image_rgb: np.ndarray, box: FaceBox, *, threshold: float = 0.0,
                rolls=ROLL_CANDIDATES) -> FaceBox:
    """The CNN box turned to the roll at which dlib's HOG detector sees the face best.

    dlib's 68-point predictor follows faces rolled up to ~40°; beyond that it returns an upright
    face shape 25-50 px off. The CNN finds such faces (HOG does not), but its box says nothing
    about the roll. For each candidate roll, a crop around the box is turned upright (face side
    120 px) and HOG runs on it; the roll whose HOG box near the crop centre scores highest (at
    least ``threshold``) wins and gives the box (HOG geometry, that roll). Without any, the box is
    returned unchanged.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        box: a face box with ``roll`` 0, canonical frame.
        threshold: least HOG score accepted.
        rolls: candidate rolls, degrees (counter-clockwise as shown).
    Returns:
        :class:`FaceBox` with the input's score and detector.
    """
    image = _check_image(image_rgb)
    best = None
    for roll in rolls:
        turned = FaceBox(box.left, box.top, box.right, box.bottom, box.score, box.detector, float(roll))
        crop, inner, back = upright_view(image, turned, side=_ROLL_SEARCH_SIDE)
        cx, cy = inner.centre
        for b in hog_faces(crop, upsample=0, threshold=threshold):
            if np.hypot(b.centre[0] - cx, b.centre[1] - cy) < 0.5 * inner.width and (
                    best is None or b.score > best[0]):
                best = (b.score, roll, b, back)
    if best is None:
        return box
    _, roll, b, back = best
    centre = back[:, :2] @ np.array(b.centre) + back[:, 2]
    scale = float(np.hypot(*back[0, :2]))  # crop px -> image px
    hw, hh = (b.width - 1) * scale / 2.0, (b.height - 1) * scale / 2.0
    return FaceBox(centre[0] - hw, centre[1] - hh, centre[0] + hw, centre[1] + hh, box.score,
                   box.detector, float(roll))


def cnn_faces(image_rgb: np.ndarray, *, upsample: int = 0, threshold: float = 0.0,
              max_side: int | None = 640, find_roll: bool = False,
              roll_threshold: float = 0.0) -> list[FaceBox]:
    """Faces found by dlib's CNN (MMOD) detector, largest first, as HOG-like boxes.

    The detector finds faces down to ~80 px at ``upsample`` 0 (~40 px at 1, at 4x the cost).
    Its cost grows with the pixel count (about 2 s per 512² image on one core at upsample 0), so
    it runs on a copy whose longer side is at most ``max_side``: faces smaller than ~80 px in
    that copy are not found.

    Args:
        image_rgb: (H, W, 3) uint8 RGB (a (H, W) grayscale array is accepted too).
        upsample: times the (downscaled) image is doubled before detection.
        threshold: boxes with an MMOD confidence below this are dropped (0 = dlib's own).
        max_side: longer side of the copy the detector sees (None = full size).
        find_roll: estimate each face's roll with :func:`roll_search` (HOG score ``roll_threshold``).
    Returns:
        list of :class:`FaceBox` (``detector="cnn"``), canonical frame, each box moved and
        scaled to where dlib's HOG detector puts its box on the same face (what the 68-point
        predictor expects).
    """
    image = _check_image(image_rgb)
    _check_detector_args(upsample, max_side)
    small, factor = _downscaled(image, max_side)
    if min(small.shape[:2]) * 2 ** int(upsample) < _CNN_MIN_SIDE:
        return []  # no face fits; dlib's network fails (and can corrupt the heap) on such inputs
    found = dlib_models.cnn_face_detector()(small, int(upsample))
    boxes = []
    for d in found:
        if d.confidence < threshold:
            continue
        r = d.rect
        left, top, right, bottom = _to_full(r.left(), r.top(), r.right(), r.bottom(), factor)
        side = right - left + 1
        cx = (left + right) / 2.0 + _CNN_SHIFT[0] * side
        cy = (top + bottom) / 2.0 + _CNN_SHIFT[1] * side
        half = (_CNN_SIDE * side - 1) / 2.0
        boxes.append(FaceBox(cx - half, cy - half, cx + half, cy + half, float(d.confidence), "cnn"))
    boxes.sort(key=lambda b: (-b.area, -b.score))
    if find_roll:
        boxes = [roll_search(image, b, threshold=roll_threshold) for b in boxes]
    return boxes


@dataclass(frozen=True)
class FaceSearch:
    """What :func:`find_faces` found.

    Attributes:
        boxes: the faces, largest first (empty when none), all from one detector.
        detector: ``"hog"`` or ``"cnn"``: the detector whose boxes these are (the last one tried
            when none was found).
        tried: the detectors run, in order, each with its settings, e.g.
            ``("hog(upsample=1, threshold=0, max_side=2000)", "cnn(upsample=0, threshold=0, max_side=640)")``.
    """

    boxes: tuple[FaceBox, ...]
    detector: str
    tried: tuple[str, ...]


def find_faces(image_rgb: np.ndarray, detector: str = "cascade", *, hog_upsample: int = 1,
               hog_threshold: float = 0.0, hog_max_side: int | None = 2000, cnn_upsample: int = 0,
               cnn_threshold: float = 0.0, cnn_max_side: int | None = 640,
               cnn_roll_search: bool = True) -> FaceSearch:
    """Faces of an image with one detector or the HOG-then-CNN cascade.

    ``cascade`` runs HOG; only when HOG finds no box scoring ``hog_threshold`` or more does it
    run the CNN on the same image. The boxes returned all come from one detector (HOG's when it
    found any), so the cost stays HOG's wherever HOG succeeds.

    Args:
        image_rgb: (H, W, 3) uint8 RGB (or (H, W) grayscale).
        detector: ``"cascade"``, ``"hog"`` or ``"cnn"``.
        hog_upsample, hog_threshold, hog_max_side: see :func:`hog_faces`.
        cnn_upsample, cnn_threshold, cnn_max_side: see :func:`cnn_faces`.
        cnn_roll_search: give each CNN face the roll found by :func:`roll_search` (at HOG score
            ``hog_threshold``), which :func:`landmarks68` undoes.
    Returns:
        :class:`FaceSearch`.
    """
    if detector not in DETECTORS:
        raise ValueError(f"detector: expected one of {DETECTORS}, got {detector!r}")
    tried = []
    if detector in ("cascade", "hog"):
        tried.append(f"hog(upsample={hog_upsample}, threshold={hog_threshold:g}, max_side={hog_max_side})")
        boxes = hog_faces(image_rgb, upsample=hog_upsample, threshold=hog_threshold, max_side=hog_max_side)
        if boxes or detector == "hog":
            return FaceSearch(tuple(boxes), "hog", tuple(tried))
    tried.append(f"cnn(upsample={cnn_upsample}, threshold={cnn_threshold:g}, max_side={cnn_max_side})")
    boxes = cnn_faces(image_rgb, upsample=cnn_upsample, threshold=cnn_threshold, max_side=cnn_max_side,
                      find_roll=cnn_roll_search, roll_threshold=hog_threshold)
    return FaceSearch(tuple(boxes), "cnn", tuple(tried))


def detect_faces(image_rgb: np.ndarray, *, upsample: int = 1, min_score: float = 0.5,
                 order: str = "largest") -> list[FaceBox]:
    """Faces found by dlib's HOG detector at full size (see :func:`find_faces` for the cascade).

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
    boxes = hog_faces(image, upsample=upsample, threshold=min_score)
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
        box: the face box, canonical frame (from :func:`find_faces` or :func:`box_from_points5`);
            a box with a ``roll`` is predicted on an upright crop (:func:`upright_view`) and the
            points are mapped back.
        method: ``"dlib"`` (the 68-point predictor of ``face_recognition_models``; trained on iBUG
            300-W, non-commercial licence) or ``"fan"`` (face-alignment, weights from the local
            folder ``fan_weights`` only).
    Returns:
        (68, 2) float64, canonical frame, iBUG order.
    """
    image = _check_image(image_rgb)
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if box.roll:
        crop, inner, back = upright_view(image, box)
        points = landmarks68(crop, inner, method, fan_weights=fan_weights)
        return points @ back[:, :2].T + back[:, 2]
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
