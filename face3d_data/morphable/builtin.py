"""The embedded, licence-free face model, generated deterministically by this module.

Nothing here comes from a scanned or licensed model: the mesh is a parametric head surface with
hand-placed anatomical features, and every mode is an explicit, smooth displacement field.

Geometry (millimetres while building; the model is stored in BFM-like micrometre units, ×1000):

- A ``rows × cols`` grid surface. Column angle θ ∈ [-105°, 105°] goes around the head (θ = 0 is
  the front, +θ towards model +x = the subject's left = image right in a frontal view). Row
  parameter t ∈ [0, 1] goes from the top of the forehead (t = 0) to the base of the neck. Each row
  is a curve that runs horizontally across the upper face and bends upwards towards the ears
  below the cheeks, so one row is exactly the 3D jaw line (chin → below the ear).
- Features (brow ridge, eye sockets and eyeballs, nose, lips, cheekbones, chin) are smooth
  depth offsets added in the frontal (x, y) coordinates of the base surface.
- Landmarks are the vertices nearest to anatomically placed iBUG-68 targets (3D-style jaw on the
  jaw row); each jaw landmark's contour line is the horizontal line of face vertices through it.
- UV is the grid itself (u = column, v = row, v up): a bijection, so nothing overlaps.
- Identity modes: ~20 named fields (face width, nose length, eye spacing, jaw width, ...) plus
  smooth random fields; expression modes: jaw open, smile, blinks, brow raise, ...
- The fields are orthonormalised in order (Gram-Schmidt), so the bases are orthonormal like the
  BFM's principal components and the stds are in the same "raw" units as BFM ``shapeEV``.

The result is cached as ``builtin-v<VERSION>-<source hash>.npz`` under ``$FACE3D_DATA_CACHE`` (default
``~/.cache/face3d_data``), written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import numpy as np

from face3d_data.morphable.model import REGIONS, MorphableModel


def _pchip(*args, **kwargs):
    """``scipy.interpolate.PchipInterpolator``, imported on first use (scipy.interpolate takes
    ~0.5 s to import, paid by every stage worker that imports the model package otherwise)."""
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(*args, **kwargs)

#: Bump when the generated model changes (the cache file name carries it).
VERSION = 1

_N_ROWS, _N_COLS = 131, 107
_THETA_MAX = np.deg2rad(105.0)
_SUPER = 2.0 / 2.6  # superellipse exponent for the cross-sections (flatter face than a cylinder)
_UNIT = 1000.0      # mm -> model units (µm, BFM-like)

# Row profile knots (t, y_front, z_front, y_side, half_width, z_centre), mm. The jaw row is the
# knot with y_front = -88 (the chin); its side end (y = 0) lies below the ear.
_PROFILE = np.array([
    [-0.05, 124.0, -8.0, 112.0, 34.0, -30.0],
    [0.00, 116.0, 30.0, 110.0, 58.0, -25.0],
    [0.04, 104.0, 60.0, 100.0, 68.0, -22.0],
    [0.08, 88.0, 78.0, 86.0, 74.0, -18.0],
    [0.13, 66.0, 88.0, 66.0, 77.0, -15.0],
    [0.19, 48.0, 92.0, 48.0, 78.0, -15.0],
    [0.26, 30.0, 89.0, 30.0, 78.0, -15.0],
    [0.34, 12.0, 91.0, 20.0, 77.0, -15.0],
    [0.42, -8.0, 92.0, 14.0, 76.0, -15.0],
    [0.51, -28.0, 91.0, 9.0, 74.0, -15.0],
    [0.61, -50.0, 90.0, 5.0, 72.0, -15.0],
    [0.71, -72.0, 89.0, 2.0, 70.0, -15.0],
    [0.78, -88.0, 86.0, 0.0, 68.0, -15.0],
    [0.84, -100.0, 60.0, -22.0, 56.0, -15.0],
    [0.90, -112.0, 45.0, -55.0, 48.0, -15.0],
    [1.00, -150.0, 42.0, -120.0, 46.0, -15.0],
])
_PROFILE[:, 0] = (_PROFILE[:, 0] - _PROFILE[0, 0]) / (_PROFILE[-1, 0] - _PROFILE[0, 0])  # t in [0, 1]
_JAW_KNOT = 12

# Anatomy (frontal mm): eye centres (±EYE_X, EYE_Y), eye half-width, lid heights; mouth line.
_EYE_X, _EYE_Y, _EYE_HALF, _LID_UP, _LID_LOW = 31.0, 30.0, 14.0, 5.0, 3.5
_MOUTH_Y, _MOUTH_HALF = -38.0, 25.0


def _cache_dir() -> Path:
    return Path(os.environ.get("FACE3D_DATA_CACHE") or Path.home() / ".cache" / "face3d_data")


def cache_path() -> Path:
    """Where :func:`builtin_model` caches the model; the name carries VERSION and a hash of this
    module's source, so an edited generator never reads a stale cache."""
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:10]
    return _cache_dir() / f"builtin-v{VERSION}-{digest}.npz"


def builtin_model(cache: bool = True) -> MorphableModel:
    """The embedded model (≈14k vertices, 40 identity + 13 expression + 15 texture modes, raw units).

    Generated on first use (under a second) and cached (see :func:`cache_path`) under
    ``$FACE3D_DATA_CACHE`` or ``~/.cache/face3d_data``; ``cache=False`` always regenerates.
    """
    path = cache_path()
    if cache and path.is_file():
        try:
            return MorphableModel.load(path)
        except ValueError:
            pass  # a corrupt cache file: regenerate and overwrite it
    model = generate_builtin_model()
    if cache:
        try:
            model.save(path)
        except OSError:
            pass  # read-only home: still usable, just not cached
    return model


# ---------------------------------------------------------------------------- small helpers
def _g(x, y, cx, cy, sx, sy):
    """Unnormalised 2-D Gaussian bump, 1 at (cx, cy)."""
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _g_pair(x, y, cx, cy, sx, sy):
    """The same bump mirrored at ±cx (the two sides of the face)."""
    return _g(x, y, cx, cy, sx, sy) + _g(x, y, -cx, cy, sx, sy)


def _smoothstep(v, lo, hi):
    s = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return s * s * (3 - 2 * s)


def _field(n: int, dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
    """(n, 3) displacement field from per-axis scalars or (n,) arrays."""
    return np.stack([np.broadcast_to(np.asarray(d, float), (n,)) for d in (dx, dy, dz)], 1)


def _lid_curves(x):
    """Upper / lower eyelid heights (mm) at frontal x, and the eye-opening weight (0 outside)."""
    dx = (np.abs(x) - _EYE_X) / _EYE_HALF
    inside = np.clip(1 - dx ** 2, 0, None) ** 0.8
    return _EYE_Y + _LID_UP * inside, _EYE_Y - _LID_LOW * inside, inside


# ---------------------------------------------------------------------------- geometry
class _Grid:
    """The base surface: per-vertex θ, row t, and base positions (mm)."""

    def __init__(self):
        a = np.linspace(-1, 1, _N_COLS)
        self.theta_cols = _THETA_MAX * (0.5 * a + 0.5 * a ** 3)
        # choose t so that the jaw knot falls exactly on a grid row
        self.jaw_row = int(round(_PROFILE[_JAW_KNOT, 0] * (_N_ROWS - 1)))
        knots_t = _PROFILE[:, 0].copy()
        knots_t[_JAW_KNOT] = self.jaw_row / (_N_ROWS - 1)
        t_rows = np.linspace(0, 1, _N_ROWS)
        prof = _pchip(knots_t, _PROFILE[:, 1:], axis=0)(t_rows)
        th, row = np.meshgrid(self.theta_cols, np.arange(_N_ROWS))
        p = prof[row]
        y_f, z_f, y_s, w, zc = (p[..., i] for i in range(5))
        side = np.sin(np.minimum(np.abs(th), np.pi / 2)) ** 4
        s, c = np.sin(th), np.cos(th)
        self.x = (w * np.sign(s) * np.abs(s) ** _SUPER).ravel()
        self.y = (y_f + (y_s - y_f) * side).ravel()
        self.z = (zc + (z_f - zc) * np.sign(c) * np.abs(c) ** _SUPER).ravel()
        self.theta = th.ravel()
        self.row = row.ravel()
        self.col = np.tile(np.arange(_N_COLS), _N_ROWS)
        # where face features may apply: front of the head, not under the chin
        self.front = (_smoothstep(np.cos(self.theta), 0.15, 0.45)
                      * _smoothstep(self.y, -112.0, -95.0))

    def triangles(self) -> np.ndarray:
        r, c = np.meshgrid(np.arange(_N_ROWS - 1), np.arange(_N_COLS - 1), indexing="ij")
        a = (r * _N_COLS + c).ravel()
        b, d, e = a + 1, a + _N_COLS, a + _N_COLS + 1
        # counter-clockwise seen from outside (+z at the front): model y up, x right
        return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.int32)

    def uv(self) -> np.ndarray:
        u = self.col / (_N_COLS - 1)
        v = 1.0 - self.row / (_N_ROWS - 1)
        return np.stack([u, v], 1)


def _nose_height(x, y):
    """Nose protrusion (mm) over the frontal plane."""
    ys = np.array([42, 32, 20, 8, -2, -9, -17, -26], float)
    hs = np.array([0, 3, 8.5, 15, 21, 15, 0.5, 0], float)
    h = _pchip(ys[::-1], hs[::-1], extrapolate=False)(y)
    h = np.nan_to_num(h)
    sy = np.array([42, 20, 0, -10, -26], float)
    ss = np.array([5.0, 5.5, 7.5, 9.0, 9.0])
    sx = _pchip(sy[::-1], ss[::-1], extrapolate=True)(np.clip(y, -26, 42))
    ridge = h * np.exp(-0.5 * (x / sx) ** 2)
    alae = 7.0 * _g_pair(x, y, 13.0, -11.0, 5.0, 4.5)
    tip = 3.0 * _g(x, y, 0, -3, 6.5, 5)
    return ridge + alae + tip


def _feature_depth(x, y):
    """Sum of the facial features' depth offsets (mm) at frontal (x, y)."""
    _, _, eye_open = _lid_curves(x)
    d = _nose_height(x, y)
    d -= 4.0 * _g(x, y, 0, 31, 8, 6)                                   # nasion
    d -= 12.0 * _g_pair(x, y, _EYE_X, _EYE_Y + 1, 14, 10)              # eye sockets
    d += 7.5 * _g_pair(x, y, _EYE_X, _EYE_Y, 10, 5.5)                  # eyeballs / lids
    d += 5.0 * _g_pair(x, y, 28, 46, 18, 5) + 3.0 * _g(x, y, 0, 44, 9, 5)  # brow ridge, glabella
    d += 6.0 * _g_pair(x, y, 48, 8, 12, 10)                            # cheekbones
    d -= 4.0 * _g_pair(x, y, 62, 40, 10, 12)                           # temples
    d += 5.0 * _g(x, y, 0, _MOUTH_Y + 6, 17, 4)                        # upper lip
    d += 5.0 * _g(x, y, 0, _MOUTH_Y - 6, 14, 4)                        # lower lip
    d -= 3.0 * _g(x, y, 0, _MOUTH_Y, 22, 1.5)                          # mouth line
    d -= 2.0 * _g_pair(x, y, _MOUTH_HALF, _MOUTH_Y, 3, 3)              # mouth corners
    d -= 1.5 * _g(x, y, 0, -22, 4, 5)                                  # philtrum groove
    d += 6.0 * _g(x, y, 0, -75, 14, 8)                                 # chin
    d -= 3.0 * _g(x, y, 0, -57, 14, 4)                                 # mentolabial sulcus
    return d


def _landmark_targets(grid: _Grid, mean_xy: np.ndarray) -> np.ndarray:
    """68 iBUG targets (frontal mm); the jaw ones are taken on the jaw row itself."""
    jaw = np.flatnonzero(grid.row == grid.jaw_row)
    jaw = jaw[np.abs(grid.theta[jaw]) <= np.deg2rad(82.0)]
    xy = mean_xy[jaw]
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))]
    jaw_pts = np.stack([np.interp(np.linspace(0, arc[-1], 17), arc, xy[:, k]) for k in (0, 1)], 1)
    brow_r = [(-52, 42), (-44, 48), (-34, 50.5), (-24, 50), (-14, 47)]
    nose = [(0, 31), (0, 21), (0, 11), (0, -2), (-13, -12), (-7, -14.5), (0, -16), (7, -14.5), (13, -12)]
    ex, ey = _EYE_X, _EYE_Y
    up, lo = _LID_UP * 0.9, _LID_LOW * 0.9
    eye_r = [(-ex - 14, ey), (-ex - 5, ey + up), (-ex + 5, ey + up), (-ex + 14, ey),
             (-ex + 5, ey - lo), (-ex - 5, ey - lo)]
    eye_l = [(ex - 14, ey), (ex - 5, ey + up), (ex + 5, ey + up), (ex + 14, ey),
             (ex + 5, ey - lo), (ex - 5, ey - lo)]
    m, h = _MOUTH_Y, _MOUTH_HALF
    mouth = [(-h, m), (-16, m + 5), (-7, m + 8), (0, m + 7), (7, m + 8), (16, m + 5), (h, m),
             (16, m - 6), (8, m - 9.5), (0, m - 10), (-8, m - 9.5), (-16, m - 6),
             (-h + 4, m), (-8, m + 1.5), (0, m + 1.2), (8, m + 1.5), (h - 4, m),
             (8, m - 1.5), (0, m - 1.8), (-8, m - 1.5)]
    brow_l = [(-x, y) for x, y in brow_r[::-1]]
    pts = np.concatenate([jaw_pts, np.array(brow_r + brow_l + nose + eye_r + eye_l + mouth, float)])
    assert pts.shape == (68, 2)
    return pts


def _nearest_front_vertex(targets, xy, candidates):
    d = np.linalg.norm(xy[candidates][None] - targets[:, None], axis=2)
    return candidates[np.argmin(d, axis=1)]


def _contour_lines(grid: _Grid, mean: np.ndarray, jaw_landmarks: np.ndarray, regions: np.ndarray):
    """For each jaw landmark: one vertex per column at the landmark's height, on its side, taken
    from the plain skin of the face (not the nose, eyes or mouth, which would otherwise win the
    silhouette test of landmark marching on profiles)."""
    lines = []
    face_rows = (grid.row <= grid.jaw_row) & (regions == REGIONS["face"])
    for i, v in enumerate(jaw_landmarks):
        y0, th0 = mean[v, 1], grid.theta[v]
        if i == 8:
            cols = np.flatnonzero(np.abs(grid.theta_cols) <= np.deg2rad(100))
        else:
            side = np.sign(th0)
            cols = np.flatnonzero((np.sign(grid.theta_cols) == side)
                                  & (np.abs(grid.theta_cols) >= np.deg2rad(5))
                                  & (np.abs(grid.theta_cols) <= np.deg2rad(100)))
        line = []
        for c in cols:
            cand = np.flatnonzero((grid.col == c) & face_rows)
            if cand.size == 0:
                continue
            best = cand[np.argmin(np.abs(mean[cand, 1] - y0))]
            if abs(mean[best, 1] - y0) < 2.5:
                line.append(best)
        if v not in line:
            line.append(v)
        order = np.argsort(grid.theta[np.array(line)])
        lines.append(np.array(line, np.int64)[order])
    return lines


def _regions(grid: _Grid, mean: np.ndarray) -> np.ndarray:
    x, y = mean[:, 0], mean[:, 1]
    up, lo, eye_open = _lid_curves(x)
    reg = np.full(len(x), REGIONS["neck"], np.uint8)
    face = (grid.row <= grid.jaw_row) & (np.abs(grid.theta) <= np.deg2rad(80)) & (y < 88)
    reg[face] = REGIONS["face"]
    eyes = face & (eye_open > 0) & (y < up + 3) & (y > lo - 3)
    reg[eyes] = REGIONS["eyes"]
    nose_base = (x / 16.0) ** 2 + ((y + 14.0) / 5.0) ** 2 < 1  # nostrils down to the subnasale
    nose = face & ((_nose_height(x, y) > 1.5) | nose_base) & (np.abs(x) < 20) & (y < 34)
    reg[nose] = REGIONS["nose"]
    mouth = face & (((x / 28.0) ** 2 + ((y - _MOUTH_Y + 1.0) / 13.0) ** 2) < 1)
    reg[mouth] = REGIONS["mouth"]
    return reg


# ---------------------------------------------------------------------------- modes
def _identity_fields(grid: _Grid, mean: np.ndarray, rng: np.random.Generator) -> list:
    """1σ identity displacement fields, (N, 3) mm each (named first, then smooth random ones)."""
    x, y, z = mean.T
    f = grid.front
    zc = -15.0
    field = functools.partial(_field, len(x))

    sgn = np.sign(x)
    eye_w = _g_pair(x, y, _EYE_X, _EYE_Y, 13, 9) * f
    lower = _smoothstep(-y, 15, 60)
    fields = [
        field(dx=0.05 * x),                                                     # face width
        field(dy=0.04 * (y - 30)),                                              # face height
        field(dz=0.06 * (z - zc)),                                              # head depth
        field(dy=-2.5 * _g(x, y, 0, -6, 10, 9) * f, dz=1.5 * _g(x, y, 0, -6, 10, 9) * f),  # nose length
        field(dz=0.18 * _nose_height(x, y) * f),                                # nose protrusion
        field(dx=0.15 * x * _g(x, y, 0, -10, 14, 8) * f),                       # nose width
        field(dx=2.5 * sgn * eye_w),                                            # eye spacing
        field(dx=0.12 * (x - sgn * _EYE_X) * eye_w, dy=0.12 * (y - _EYE_Y) * eye_w),  # eye size
        field(dy=3.0 * _g_pair(x, y, _EYE_X, 36, 22, 14) * f),                  # eye height
        field(dy=2.5 * _g_pair(x, y, 33, 48, 16, 5) * f),                       # brow height
        field(dz=3.0 * _g_pair(x, y, 28, 46, 18, 6) * f),                       # brow ridge
        field(dx=0.08 * x * _smoothstep(-y, 10, 60)),                           # jaw width
        field(dy=-4.0 * _smoothstep(-y, 50, 80)),                               # chin length
        field(dz=4.0 * _g(x, y, 0, -80, 18, 12) * f),                           # chin protrusion
        field(dy=1.0 * (_g(x, y, 0, _MOUTH_Y + 6, 15, 4) - _g(x, y, 0, _MOUTH_Y - 6, 13, 4)) * f,
              dz=2.0 * (_g(x, y, 0, _MOUTH_Y + 6, 15, 4) + _g(x, y, 0, _MOUTH_Y - 6, 13, 4)) * f),  # lips
        field(dx=0.12 * x * _g(x, y, 0, _MOUTH_Y, 28, 8) * f),                  # mouth width
        field(dx=2.0 * sgn * _g_pair(x, y, 48, 8, 12, 10) * f,
              dz=4.0 * _g_pair(x, y, 48, 8, 12, 10) * f),                       # cheekbones
        field(dx=3.0 * sgn * _g_pair(x, y, 40, -25, 14, 14) * f,
              dz=3.0 * _g_pair(x, y, 40, -25, 14, 14) * f),                     # cheek fullness
        field(dz=-5.0 * _smoothstep(y, 40, 100) * (y - 40) / 60 * f),           # forehead slope
        field(dy=3.0 * _g(x, y, 0, -40, 25, 10) * f),                           # mouth height
        field(dz=3.0 * _g(x, y, 0, 18, 6, 12) * f),                             # nose bridge
        field(dy=1.5 * x / 60 * f, dz=1.0 * lower * x / 60 * f),                # asymmetry
    ]
    # smooth random fields: a few wide 3-D Gaussian blobs each; half of them left-right symmetric
    pts = mean
    for k in range(18):
        centres = rng.uniform([-60, -90, 20], [60, 80, 100], size=(4, 3))
        vecs = rng.normal(0, 1.2, size=(4, 3))
        d = np.zeros_like(pts)
        for cen, vec in zip(centres, vecs):
            w = np.exp(-0.5 * np.sum((pts - cen) ** 2, axis=1) / 28.0 ** 2)
            d += w[:, None] * vec
            if k % 2 == 0:  # mirror image: x -> -x
                cm = cen * [-1, 1, 1]
                wm = np.exp(-0.5 * np.sum((pts - cm) ** 2, axis=1) / 28.0 ** 2)
                d += wm[:, None] * (vec * [-1, 1, 1])
        fields.append(d * f[:, None])
    return fields


def _expression_fields(grid: _Grid, mean: np.ndarray) -> list:
    """1σ expression displacement fields, (N, 3) mm each."""
    x, y, z = mean.T
    f = grid.front
    sgn = np.sign(x)
    up, lo, eye_open = _lid_curves(x)
    field = functools.partial(_field, len(x))

    # jaw open: rotate everything below the mouth line about the jaw hinge (y=20, z=-5); the neck
    # rows below the jaw follow with a fading weight.
    alpha = 0.07
    # sharp between the lips, spread over the cheeks further out (the skin stretches there)
    band = 1.2 + 1.2 * np.clip(np.abs(x) - 20.0, 0, None)
    below = _smoothstep(_MOUTH_Y + 1.0 - y, -band, band) * (grid.row <= grid.jaw_row + 4)
    below = below * _smoothstep(np.cos(grid.theta), 0.0, 0.5)
    jaw_open = field(dy=-alpha * (z + 5) * below, dz=alpha * (y - 20) * below)

    # eyelids: squash the opening and upper lid towards the lower lid line
    def blink(side):
        w = (eye_open > 0) * (np.sign(x) == side) * _smoothstep(up + 6 - y, 0, 3)
        w = w * _smoothstep(eye_open, 0.0, 0.3) * f
        return field(dy=-0.5 * np.clip(y - lo, 0, None) * w)

    corners = _g_pair(x, y, _MOUTH_HALF, _MOUTH_Y, 9, 8) * f
    mouth = _g(x, y, 0, _MOUTH_Y, 22, 10) * f
    lower_lid = _g_pair(x, y, _EYE_X, _EYE_Y - 5, 12, 3) * f
    return [
        jaw_open,
        field(dx=3.0 * sgn * corners, dy=3.5 * corners + 1.5 * _g_pair(x, y, 35, -15, 12, 10) * f,
              dz=-1.0 * corners),                                                     # smile
        field(dx=1.0 * sgn * corners, dy=-3.0 * corners),                            # lip corners down
        field(dy=4.0 * _g_pair(x, y, 30, 50, 22, 8) * f),                            # brow raise
        field(dx=-3.0 * sgn * _g_pair(x, y, 15, 47, 9, 6) * f,
              dy=-2.5 * _g_pair(x, y, 15, 47, 9, 6) * f),                            # brow furrow
        blink(-1.0),                                                                 # blink right eye
        blink(1.0),                                                                  # blink left eye
        field(dx=-0.15 * x * mouth, dz=3.0 * mouth),                                 # pucker
        field(dx=3.0 * mouth),                                                       # mouth sideways
        field(dx=3.0 * sgn * _g_pair(x, y, 38, -30, 12, 12) * f,
              dz=4.0 * _g_pair(x, y, 38, -30, 12, 12) * f),                          # cheek puff
        field(dy=2.0 * _g_pair(x, y, 10, -30, 8, 5) * f),                            # upper lip raise
        field(dx=0.1 * x * mouth, dy=-0.15 * (y - _MOUTH_Y) * mouth),                # lip press / stretch
        field(dy=1.5 * lower_lid),                                                   # squint
    ]


def _texture(grid: _Grid, mean: np.ndarray, rng: np.random.Generator):
    """Per-vertex albedo mean (N, 3) 0-255 and 1σ texture fields."""
    x, y = mean[:, 0], mean[:, 1]
    up, lo, eye_open = _lid_curves(x)
    f = grid.front
    skin = np.array([212.0, 165.0, 140.0])
    tex = np.tile(skin, (len(x), 1))
    tex += (8.0 * _smoothstep(y, 40, 90))[:, None] * [1, 1, 1]                   # lighter forehead
    tex += (14.0 * _g_pair(x, y, 40, -5, 14, 12) * f)[:, None] * [1, -0.6, -0.4]  # cheek blush
    tex -= (10.0 * (1 - f))[:, None] * [1, 1, 1]                                 # neck / sides
    lips_outer = ((x / 26.0) ** 2 + ((y - _MOUTH_Y) / np.where(y > _MOUTH_Y, 8.5, 10.5)) ** 2)
    lips = _smoothstep(1.15 - lips_outer, 0, 0.3) * f
    tex = tex * (1 - lips[:, None]) + lips[:, None] * [175.0, 95.0, 92.0]
    inner = (np.abs(y - _MOUTH_Y) < 1.4) & (np.abs(x) < _MOUTH_HALF - 4) & (f > 0.5)
    tex[inner] = [70.0, 30.0, 35.0]
    brow_y = 47.0 + 3.0 * np.clip(1 - ((np.abs(x) - 33) / 20) ** 2, 0, 1)
    brows = (_smoothstep(2.6 - np.abs(y - brow_y), 0, 1.0) * (np.abs(x) > 11) * (np.abs(x) < 54) * f)
    tex = tex * (1 - brows[:, None]) + brows[:, None] * [80.0, 58.0, 45.0]
    # eyes: sclera, iris, pupil inside the opening; a dark lash line along the upper lid
    opening = (eye_open > 0) & (y < up) & (y > lo) & (f > 0.5)
    r = np.hypot(np.abs(x) - _EYE_X, y - _EYE_Y - 0.3)
    eye_col = np.where((r < 2.0)[:, None], [20.0, 15.0, 15.0],
                       np.where((r < 5.5)[:, None], [95.0, 70.0, 50.0], [235.0, 228.0, 222.0]))
    tex[opening] = eye_col[opening]
    lash = (eye_open > 0.05) & (np.abs(y - up) < 0.9) & (f > 0.5)
    tex[lash] = [45.0, 30.0, 28.0]
    nostrils = _g_pair(x, y, 6.5, -14.5, 2.5, 1.8) * f
    tex = tex * (1 - nostrils[:, None]) + nostrils[:, None] * [70.0, 40.0, 40.0]

    skin_w = (1 - lips) * (1 - brows) * ~opening * ~inner * (1 - nostrils)
    beard = _smoothstep(-y, 18, 40) * (grid.row <= grid.jaw_row + 6) * f
    iris = ((r < 5.5) & opening).astype(float)
    fields = [
        skin_w[:, None] * [24.0, 21.0, 18.0],                          # lighter / darker skin
        skin_w[:, None] * [7.0, -2.0, -2.0],                           # redness
        skin_w[:, None] * [4.0, 4.0, -7.0],                            # yellow / olive
        lips[:, None] * [20.0, -5.0, 0.0],                             # lip colour
        brows[:, None] * [-25.0, -20.0, -15.0],                        # brow darkness
        (_g_pair(x, y, 40, -5, 14, 12) * f)[:, None] * [9.0, -3.0, -3.0],  # blush
        iris[:, None] * [-30.0, 0.0, 35.0],                            # iris colour
        (beard * skin_w)[:, None] * [-12.0, -11.0, -10.0],             # stubble shadow
        (_smoothstep(y, 20, 80) * skin_w)[:, None] * [10.0, 6.0, 2.0],  # forehead tan
    ]
    for _ in range(6):
        cen = rng.uniform([-60, -80, 40], [60, 80, 100])
        w = np.exp(-0.5 * np.sum((mean - cen) ** 2, axis=1) / 30.0 ** 2) * skin_w
        fields.append(w[:, None] * rng.normal(0, 4, 3))
    return tex, fields


def _unit_columns(fields, scale: float):
    """Gram-Schmidt the 1σ fields in order into an orthonormal (N, 3, K) basis.

    Each mode keeps its own meaning minus what earlier modes already explain (e.g. "jaw width"
    becomes jaw width beyond the overall face width); its std is the norm of that remainder.
    Returns (basis, std) with unit, mutually orthogonal columns, like BFM's principal components.
    """
    stacked = np.stack(fields, axis=2) * scale
    n, _, k = stacked.shape
    q, r = np.linalg.qr(stacked.reshape(3 * n, k))
    sign = np.sign(np.diag(r))
    sign[sign == 0] = 1
    return (q * sign).reshape(n, 3, k), np.abs(np.diag(r))


def generate_builtin_model() -> MorphableModel:
    """Build the embedded model from scratch (deterministic; no cache). See the module docstring."""
    rng = np.random.default_rng(20260101)
    grid = _Grid()
    depth = _feature_depth(grid.x, grid.y) * grid.front
    mean = np.stack([grid.x, grid.y, grid.z + depth], 1)

    front_cand = np.flatnonzero((np.abs(grid.theta) < np.deg2rad(70)) & (grid.row < grid.jaw_row))
    targets = _landmark_targets(grid, mean[:, :2])
    lm = _nearest_front_vertex(targets, mean[:, :2], front_cand)
    jaw = np.flatnonzero(grid.row == grid.jaw_row)
    lm[:17] = _nearest_front_vertex(targets[:17], mean[:, :2], jaw)
    if len(np.unique(lm)) != 68:
        raise AssertionError("builtin model: two landmarks fell on the same vertex")

    shape_basis, shape_std = _unit_columns(_identity_fields(grid, mean, rng), _UNIT)
    exp_basis, exp_std = _unit_columns(_expression_fields(grid, mean), _UNIT)
    tex_mean, tex_fields = _texture(grid, mean, rng)
    tex_basis, tex_std = _unit_columns(tex_fields, 1.0)
    regions = _regions(grid, mean)
    return MorphableModel(
        mean * _UNIT, shape_basis, shape_std, exp_basis, exp_std,
        tex_mean=np.clip(tex_mean, 0, 255), tex_basis=tex_basis, tex_std=tex_std,
        triangles=grid.triangles(), landmarks=lm, uv=grid.uv(), regions=regions,
        contour_lines=_contour_lines(grid, mean, lm[:17], regions), convention="raw",
        name=f"face3d-data builtin v{VERSION}")


#: Names of the builtin model's named modes, in basis order (the rest are smooth random fields).
IDENTITY_MODE_NAMES = ("face width", "face height", "head depth", "nose length", "nose protrusion",
                       "nose width", "eye spacing", "eye size", "eye height", "brow height",
                       "brow ridge", "jaw width", "chin length", "chin protrusion", "lip thickness",
                       "mouth width", "cheekbones", "cheek fullness", "forehead slope",
                       "mouth height", "nose bridge", "asymmetry")
EXPRESSION_MODE_NAMES = ("jaw open", "smile", "lip corners down", "brow raise", "brow furrow",
                         "blink right", "blink left", "pucker", "mouth sideways", "cheek puff",
                         "upper lip raise", "lip stretch", "squint")
