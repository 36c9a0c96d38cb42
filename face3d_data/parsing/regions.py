"""Per-vertex part classes of a morphable model (see :mod:`face3d_data.parsing.classes`).

Three sources, chosen by :class:`PartLabeller`:

- ``"model"``: the model's own region labels (:data:`face3d_data.morphable.model.REGIONS`) give
  ``nose`` and the face outline: ``neck`` is the non-face region below the jaw line (landmarks
  0–16), the non-face region above it (top and sides of the head) is skin. The finer parts the
  regions do not separate (each brow, each eye, upper / lower lip, inner mouth) come from the 68
  landmarks as below, outside the neck. A model without regions is a
  :class:`~face3d_data.errors.ConfigError`.
- ``"landmarks"``: every class from the 68 landmarks (any model with the iBUG 68 landmark
  vertices, e.g. a BFM): parts as below, ``nose`` = the polygon of the nose landmarks, ``neck`` =
  the vertices below the jaw line (landmarks 0–16), skin = the rest.
- a file: ``.npy`` holding an (N,) integer array, or ``.txt`` with one integer per line (N
  lines), one class id per model vertex in the numbering of
  :data:`~face3d_data.parsing.classes.CLASS_TABLE`; ids 1..10 (0 = background is not a vertex
  class).

Landmark parts are the vertices whose model-space (x, y) lies inside a polygon of the *sample's
own* landmark vertices (so an open mouth or a closed eye is followed), and which are on the front
surface (z no further back than ``depth_margin`` inter-ocular distances behind the polygon's
landmarks). Model space: x right, y up, z towards the viewer in the frontal pose. Polygons
(iBUG 0-based landmark ids):

- eyes: 36–41 (left eye), 42–47 (right eye) (left = image left, see
  :mod:`face3d_data.parsing.classes`);
- brows: a band under each brow polyline (17–21 left, 22–26 right), reaching 40 % of the way
  towards that eye's centre and 8 % the other way;
- upper lip: outer 48–54 then inner 64–60; lower lip: outer 54–59, 48 then inner 60, 67–64;
  inner mouth: the inner lip polygon 60–67;
- nose (``"landmarks"`` only): bridge top 27 widened sideways by 20 % of the nostril span
  (31→35), then 31–35 with the outer nostrils widened by 15 %.

Later parts overwrite earlier ones in the order nose, brows, eyes, lips, inner mouth.

Per-corner classes (:meth:`PartLabeller.corner_classes`) give each triangle corner its vertex's
class, except that a triangle whose corners are all lip or inner-mouth vertices and whose centre
lies inside the inner lip polygon is inner mouth throughout: the BFM topologies close the mouth
with such triangles (``tri_mouth``) and have no vertex inside the opening.
"""

from __future__ import annotations

import os

import numpy as np

from face3d_data.errors import ConfigError, InputError
from face3d_data.parsing.classes import CLASSES, N_CLASSES

SOURCES = ("model", "landmarks")

# left / right as seen in the image (iBUG convention)
_LEFT_BROW, _RIGHT_BROW = np.arange(17, 22), np.arange(22, 27)
_LEFT_EYE, _RIGHT_EYE = np.arange(36, 42), np.arange(42, 48)
_UPPER_LIP = np.array([48, 49, 50, 51, 52, 53, 54, 64, 63, 62, 61, 60])
_LOWER_LIP = np.array([54, 55, 56, 57, 58, 59, 48, 60, 67, 66, 65, 64])
_INNER_MOUTH = np.arange(60, 68)
_JAW = np.arange(0, 17)
_MOUTH_CLASS = np.zeros(256, bool)  # lookup: is this class id a lip / inner-mouth class
_MOUTH_CLASS[[CLASSES["upper_lip"], CLASSES["lower_lip"], CLASSES["inner_mouth"]]] = True


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test.

    Args:
        points: (P, 2) points; polygon: (K, 2) vertices in order (closed implicitly), any frame.
    Returns:
        (P,) bool. Points exactly on an edge may fall either way.
    """
    p = np.asarray(points, np.float64)
    poly = np.asarray(polygon, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
        raise ValueError(f"points (P, 2) and polygon (K>=3, 2) expected, got {p.shape} and {poly.shape}")
    a, b = poly, np.roll(poly, -1, axis=0)
    px, py = p[:, :1], p[:, 1:]                        # (P, 1) against (K,) edges
    crosses = (a[:, 1] > py) != (b[:, 1] > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = a[:, 0] + (py - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return np.logical_xor.reduce(crosses & (px < x_at), axis=1)


def _brow_band(brow: np.ndarray, eye: np.ndarray) -> np.ndarray:
    towards_eye = eye.mean(axis=0) - brow.mean(axis=0)
    return np.concatenate([brow - 0.08 * towards_eye, (brow + 0.4 * towards_eye)[::-1]])


def _nose_polygon(lm: np.ndarray) -> np.ndarray:
    span = lm[35] - lm[31]
    return np.stack([lm[27] - 0.2 * span, lm[31] - 0.15 * span, lm[32], lm[33], lm[34],
                     lm[35] + 0.15 * span, lm[27] + 0.2 * span])


def part_polygons(landmarks_xy: np.ndarray) -> dict[str, np.ndarray]:
    """The landmark polygons of each part (module docstring), in the frame of ``landmarks_xy``.

    Args:
        landmarks_xy: (68, 2) iBUG-ordered points (model space x, y, or image points).
    Returns:
        ``{class name: (K, 2) float64 polygon}`` for ``nose``, the brows, the eyes, the lips and
        ``inner_mouth``, in overwrite order.
    """
    lm = np.asarray(landmarks_xy, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks_xy: expected (68, 2), got {lm.shape}")
    return {
        "nose": _nose_polygon(lm),
        "left_brow": _brow_band(lm[_LEFT_BROW], lm[_LEFT_EYE]),
        "right_brow": _brow_band(lm[_RIGHT_BROW], lm[_RIGHT_EYE]),
        "left_eye": lm[_LEFT_EYE],
        "right_eye": lm[_RIGHT_EYE],
        "upper_lip": lm[_UPPER_LIP],
        "lower_lip": lm[_LOWER_LIP],
        "inner_mouth": lm[_INNER_MOUTH],
    }


_POLYGON_LANDMARKS = {"nose": np.r_[27, 31:36], "left_brow": _LEFT_BROW, "right_brow": _RIGHT_BROW,
                      "left_eye": _LEFT_EYE, "right_eye": _RIGHT_EYE, "upper_lip": _UPPER_LIP,
                      "lower_lip": _LOWER_LIP, "inner_mouth": _INNER_MOUTH}


def below_jaw(vertices: np.ndarray, landmark_index: np.ndarray) -> np.ndarray:
    """(N,) bool: vertices below the jaw line of landmarks 0–16 (model space, y up).

    Between the outermost jaw landmarks, "below" is under the polyline; outside that x range it
    is under the lower of the two outermost jaw points.
    """
    v = np.asarray(vertices, np.float64)
    jaw = v[np.asarray(landmark_index)[_JAW]]
    order = np.argsort(jaw[:, 0])
    jx, jy = jaw[order, 0], jaw[order, 1]
    x, y = v[:, 0], v[:, 1]
    inside = (x >= jx[0]) & (x <= jx[-1])
    line = np.interp(x, jx, jy)
    return np.where(inside, y < line, y < min(jy[0], jy[-1]))


def landmark_vertex_classes(vertices: np.ndarray, landmark_index: np.ndarray, base: np.ndarray | None = None,
                            depth_margin: float = 0.3) -> np.ndarray:
    """Per-vertex class ids from the 68 landmarks (module docstring).

    Args:
        vertices: (N, 3) model-space vertices of the face to label (its own identity/expression).
        landmark_index: (68,) vertex ids of the iBUG landmarks.
        base: optional (N,) uint8 classes to refine (:func:`classes_from_regions`): its neck
            vertices above the jaw line become skin and the landmark parts are drawn on the
            other non-neck vertices. None: skin, the jaw-line neck and the landmark nose polygon.
        depth_margin: in inter-ocular distances (see module docstring).
    Returns:
        (N,) uint8 class ids in 1..10.
    """
    v = np.asarray(vertices, np.float64)
    idx = np.asarray(landmark_index)
    if v.ndim != 2 or v.shape[1] != 3 or idx.shape != (68,):
        raise ValueError(f"vertices (N, 3) and 68 landmark ids expected, got {v.shape} and {idx.shape}")
    lm = v[idx]
    iod = float(np.linalg.norm(lm[_LEFT_EYE].mean(0) - lm[_RIGHT_EYE].mean(0)))
    if base is None:
        classes = np.full(len(v), CLASSES["skin"], np.uint8)
        classes[below_jaw(v, idx)] = CLASSES["neck"]
        polygons = part_polygons(lm[:, :2])
    else:
        classes = np.asarray(base, np.uint8).copy()
        if classes.shape != (len(v),):
            raise ValueError(f"base: expected ({len(v)},) classes, got {classes.shape}")
        neck = classes == CLASSES["neck"]
        classes[neck & ~below_jaw(v, idx)] = CLASSES["skin"]
        polygons = part_polygons(lm[:, :2])
        del polygons["nose"]
    allowed = classes != CLASSES["neck"]
    for name, polygon in polygons.items():
        lo, hi = polygon.min(axis=0), polygon.max(axis=0)
        near = (allowed & (v[:, 0] >= lo[0]) & (v[:, 0] <= hi[0]) & (v[:, 1] >= lo[1]) & (v[:, 1] <= hi[1])
                & (v[:, 2] >= lm[_POLYGON_LANDMARKS[name], 2].min() - depth_margin * iod))
        candidates = np.flatnonzero(near)
        if not candidates.size:
            continue
        inside = points_in_polygon(v[candidates, :2], polygon)
        classes[candidates[inside]] = CLASSES[name]
    return classes


def mouth_corner_classes(vertices: np.ndarray, triangles: np.ndarray, landmark_index: np.ndarray,
                         vertex_classes: np.ndarray) -> np.ndarray:
    """(M, 3) uint8 corner classes: the vertices' classes, with mouth-closing triangles inner mouth.

    A triangle closes the mouth when its three corners are lip or inner-mouth vertices and its
    centre (model-space x, y) lies inside the inner lip polygon (landmarks 60–67).
    """
    tri = np.asarray(triangles)
    corners = np.asarray(vertex_classes, np.uint8)[tri]
    mouth = _MOUTH_CLASS[corners].all(axis=1)
    candidates = np.flatnonzero(mouth)
    if candidates.size:
        v = np.asarray(vertices, np.float64)
        polygon = v[np.asarray(landmark_index)[_INNER_MOUTH], :2]
        centres = v[tri[candidates], :2].mean(axis=1)
        closing = candidates[points_in_polygon(centres, polygon)]
        corners[closing] = CLASSES["inner_mouth"]
    return corners


def classes_from_regions(regions: np.ndarray) -> np.ndarray:
    """Model regions (``REGIONS``) -> base classes: neck -> neck, nose -> nose, the rest -> skin."""
    from face3d_data.morphable.model import REGIONS

    reg = np.asarray(regions)
    out = np.full(reg.shape, CLASSES["skin"], np.uint8)
    out[reg == REGIONS["neck"]] = CLASSES["neck"]
    out[reg == REGIONS["nose"]] = CLASSES["nose"]
    return out


def load_vertex_classes(path: str | os.PathLike, n_vertices: int) -> np.ndarray:
    """Read a per-vertex class file (``.npy`` (N,) integers, or ``.txt`` one integer per line).

    Raises:
        InputError: unreadable file, wrong count, or ids outside 1..10.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "no such per-vertex class file")
    try:
        if path.endswith(".npy"):
            data = np.load(path, allow_pickle=False)
        else:
            data = np.loadtxt(path, dtype=np.float64, ndmin=1)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a list of class ids ({type(exc).__name__}: {exc})") from None
    data = np.asarray(data).ravel()
    if data.size != n_vertices:
        raise InputError(path, f"{data.size} class ids for a model of {n_vertices} vertices")
    if data.dtype.kind not in "iu" and not (np.all(np.isfinite(data)) and np.all(data == np.round(data))):
        raise InputError(path, "class ids must be integers")
    if data.size and (data.min() < 1 or data.max() >= N_CLASSES):
        raise InputError(path, f"class ids must lie in 1..{N_CLASSES - 1} (see the class table), "
                               f"found {int(data.min())}..{int(data.max())}")
    return data.astype(np.uint8)


class PartLabeller:
    """Per-vertex class ids for the faces of one model.

    Args:
        model: a :class:`~face3d_data.morphable.MorphableModel` with triangles.
        source: ``"model"``, ``"landmarks"`` or a per-vertex class file (module docstring).
    Raises:
        ConfigError: a model without triangles, ``"model"`` for a model without regions.
        InputError: a bad class file.
    """

    def __init__(self, model, source: str = "model"):
        if model.triangles is None or len(model.triangles) == 0:
            raise ConfigError(f"model {model.name!r} has no triangles: parsing maps need a mesh")
        self.model = model
        self.source = str(source)
        self._static = None
        self._static_corners = None
        self._base = None
        if self.source == "model":
            if model.regions is None:
                raise ConfigError(f"model {model.name!r} has no region labels: use classes=landmarks "
                                  "(parts from the 68 landmarks) or classes=<file> (per-vertex class ids)")
            self._base = classes_from_regions(model.regions)
        elif self.source != "landmarks":
            self._static = load_vertex_classes(self.source, model.n_vertices)

    @property
    def per_sample(self) -> bool:
        """True when the classes depend on the face's own shape (landmark-derived parts)."""
        return self._static is None

    def vertex_classes(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """(N,) uint8 class ids of the face with model-space ``vertices`` (N, 3).

        ``vertices`` may be None for a class file (the classes do not depend on the face); the
        other sources then use the model's mean shape.
        """
        if self._static is not None:
            return self._static
        v = self.model.mean if vertices is None else vertices
        return landmark_vertex_classes(v, self.model.landmarks, self._base)

    def corner_classes(self, vertices: np.ndarray | None = None) -> np.ndarray:
        """(M, 3) uint8 class ids of each triangle corner (what the maps draw; module docstring).

        A class file is taken as given (its vertices' classes, no mouth rule).
        """
        if self._static is not None:
            if self._static_corners is None:
                self._static_corners = self._static[self.model.triangles]
            return self._static_corners
        v = self.model.mean if vertices is None else vertices
        return mouth_corner_classes(v, self.model.triangles, self.model.landmarks, self.vertex_classes(v))
