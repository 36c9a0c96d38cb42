"""300W-LP label files: the one schema of every field, reading, writing and checking them.

A 300W-LP / AFLW2000-3D label is a Matlab ``.mat`` file beside its image. :data:`FIELDS` states,
for every field this project reads or writes, its stored shape and dtype, its frame and meaning.
The frame conversions between the stored fields and the canonical frame (0-based, x right, y
down, pixel centres at integers) happen **only here**: :func:`read_labels` returns canonical
arrays, :func:`labels_to_mat` takes canonical arrays, and :func:`points_to_canonical` /
:func:`points_to_stored` / :func:`roi_to_canonical` / :func:`roi_to_stored` convert single fields
for code that works on stored fields (the rotation augmentation).

Stored frames (Matlab, everything 1-based):

- ``pt2d``, ``pt3d_68`` (x, y), ``pts_2d`` / ``pts_3d`` of ``landmarks/*_pts.mat`` and ``roi`` are
  **1-based, y down**: canonical = stored - 1 (``-1`` = missing point, read as NaN).
- ``Pose_Para``'s translation is in the Matlab projection frame (1-based, **y up**); see
  :mod:`face3d_data.w300lp.pose`, which converts projections with :func:`~face3d_data.w300lp.pose.project`.

The trap: in 300W-LP, ``pt2d`` and ``roi`` are the original annotation of view ``_0`` and are
copied unchanged into every other view ``_k``; :attr:`Labels.pt2d_valid` says so, and
:func:`landmarks_from_params` regenerates landmarks for any view from the 3DMM parameters.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face3d_data.coords import canonical_to_pt2d, pt2d_to_canonical
from face3d_data.errors import InputError
from face3d_data.io import check_field, read_mat, write_mat
from face3d_data.w300lp.pose import check_pose_para, project


@dataclass(frozen=True)
class FieldSpec:
    """One field of a 300W-LP label file.

    Attributes:
        name: the Matlab variable name.
        stored: the stored shape (``K`` = any count).
        dtype: the stored dtype this project writes (what 300W-LP stores).
        frame: the frame of its values on disk (canonical conversion in parentheses).
        meaning: what it holds.
        required: whether :func:`read_labels` requires it.
    """

    name: str
    stored: str
    dtype: str
    frame: str
    meaning: str
    required: bool = False


#: Every field of a 300W-LP label file, in the order :func:`labels_to_mat` writes them.
FIELDS = (
    FieldSpec("Pose_Para", "(1, 7)", "float32",
              "angles radians; tx, ty Matlab projection frame (1-based, y up)",
              "[pitch, yaw, roll, tx, ty, tz, f]; x_matlab = f·R·S + t, R = (Rz·Ry·Rx)ᵀ", True),
    FieldSpec("Shape_Para", "(K, 1)", "float64 (float32 in re-fitted files)", "model coefficients",
              "identity coefficients in the model's raw units (multiply the basis directly)", True),
    FieldSpec("Exp_Para", "(K, 1)", "float64 (float32 in re-fitted files)", "model coefficients",
              "expression coefficients in the model's raw units", True),
    FieldSpec("Tex_Para", "(K, 1)", "float64", "model coefficients",
              "texture coefficients (scaled by the texture std)"),
    FieldSpec("Color_Para", "(1, 7)", "float32", "-",
              "colour transform of the appearance fit; [1, 1, 1, 0, 0, 0, 1] when none"),
    FieldSpec("Illum_Para", "(1, 10)", "float64", "-",
              "illumination parameters of the appearance fit; zeros when none"),
    FieldSpec("pt2d", "(2, 68); (2, 21) in AFLW2000-3D", "float64",
              "1-based, y down (canonical = stored - 1; -1 = missing)",
              "2D landmarks (300W-LP: the original annotation, valid for view _0 only)"),
    FieldSpec("pt3d_68", "(3, 68)", "float32",
              "x, y 1-based, y down (canonical = stored - 1); z projected, larger = closer",
              "the model's 68 landmark vertices projected with the fit"),
    FieldSpec("roi", "(1, 4)", "int16", "1-based, y down (canonical = stored - 1)",
              "square face box [x1, y1, x2, y2] (300W-LP: of the source photo, may exceed the image)"),
)
FIELD_SPECS = {spec.name: spec for spec in FIELDS}

#: ``read_mat`` schema of the required fields (squeezed shapes; None = any size).
REQUIRED_SCHEMA = {"Pose_Para": (7,), "Shape_Para": (None,), "Exp_Para": (None,)}

#: ``pts_2d``/``pts_3d`` of ``landmarks/<subset>/<name>_pts.mat``: (68, 2) float64, 1-based, y down.
PTS_SCHEMA = {"pts_2d": (68, 2), "pts_3d": (68, 2)}

_DEFAULT_COLOR = np.array([[1, 1, 1, 0, 0, 0, 1]], np.float32)


# ------------------------------------------------------------------ single-field conversions
def points_to_canonical(points) -> np.ndarray:
    """Stored 1-based y-down points ``(..., 2|3)`` (``pt2d``ᵀ, ``pt3d_68``ᵀ, ``pts_2d``) -> canonical.

    x, y lose 1; a z column passes through; ``-1`` (missing) becomes NaN. Returns float64.
    """
    return pt2d_to_canonical(points)


def points_to_stored(points) -> np.ndarray:
    """Canonical points ``(..., 2|3)`` -> stored 1-based y down; NaN becomes ``-1``. float64."""
    return canonical_to_pt2d(points)


def roi_to_canonical(roi) -> np.ndarray:
    """Stored ``roi`` (any 4-element layout, 1-based y down) -> (4,) float64 canonical [x1, y1, x2, y2]."""
    r = np.asarray(roi, np.float64).reshape(-1)
    if r.size != 4:
        raise ValueError(f"roi: expected 4 values [x1, y1, x2, y2], got shape {np.shape(roi)}")
    return r - 1.0


def roi_to_stored(roi) -> np.ndarray:
    """Canonical ``[x1, y1, x2, y2]`` -> stored ``roi``: (1, 4) int16, 1-based y down (rounded)."""
    r = np.asarray(roi, np.float64).reshape(-1)
    if r.size != 4 or not np.all(np.isfinite(r)):
        raise ValueError(f"roi: expected 4 finite values [x1, y1, x2, y2], got {roi!r}")
    return np.round(r + 1.0).astype(np.int16).reshape(1, 4)


def roi_of_points(points, scale: float = 1.0) -> np.ndarray:
    """The square box around canonical points: (4,) float64 canonical [x1, y1, x2, y2].

    The box is centred on the centre of the points' bounding box, with side = ``scale`` × its
    longer side. NaN points (missing) are ignored.
    """
    p = np.asarray(points, np.float64)[..., :2].reshape(-1, 2)
    p = p[np.isfinite(p).all(axis=1)]
    if not len(p):
        raise ValueError("roi: no finite points")
    lo, hi = p.min(axis=0), p.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * float(scale)
    return np.concatenate([centre - half, centre + half])


# ------------------------------------------------------------------------------- reading
@dataclass
class Labels:
    """Validated 300W-LP labels, canonical frame.

    Attributes:
        pose_para: (7,) float64 [pitch, yaw, roll (rad), tx, ty, tz, f] (translation in the Matlab
            frame, as stored; project with :func:`face3d_data.w300lp.pose.project`).
        shape_para: (Ks,) float64; exp_para: (Ke,) float64; tex_para: (Kt,) float64 or None.
        pt2d: (68, 2) float64 canonical (NaN = missing), or None when absent / not 68 points
            (AFLW2000 stores 21).
        pt3d_68: (68, 3) float64 canonical x, y and z, or None.
        roi: (4,) float64 canonical [x1, y1, x2, y2], or None.
        pt2d_valid: False for 300W-LP views other than ``_0`` (their ``pt2d``/``roi`` belong to view 0).
        raw: every field as stored in the file.
    """

    pose_para: np.ndarray
    shape_para: np.ndarray
    exp_para: np.ndarray
    tex_para: np.ndarray | None = None
    pt2d: np.ndarray | None = None
    pt3d_68: np.ndarray | None = None
    roi: np.ndarray | None = None
    pt2d_valid: bool = True
    raw: dict = field(default_factory=dict, repr=False)


def _column(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1)


def read_labels(mat_path: str | os.PathLike) -> Labels:
    """Read and validate one 300W-LP / AFLW2000-3D label file (see :func:`labels_from_fields`).

    Raises:
        InputError: naming the file and the field.
    """
    data = read_mat(mat_path, required=REQUIRED_SCHEMA, finite=_FINITE)
    return _labels(data, mat_path)  # read_mat has made labels_from_fields' field checks


_FINITE = ("Tex_Para", "pt3d_68", "roi")


def read_label_fields(mat_path: str | os.PathLike, required=("Pose_Para",)) -> dict:
    """The fields of a label file exactly as stored (for code that must keep every field, e.g.
    the rotation augmentation), with ``required`` fields present and every numeric field of
    :data:`FIELDS` finite (``pt2d`` may hold -1 for missing points).

    Raises:
        InputError: naming the file and the field.
    """
    schema = {name: REQUIRED_SCHEMA.get(name) for name in required}
    finite = [spec.name for spec in FIELDS if spec.name not in schema]
    return read_mat(mat_path, required=schema, finite=finite)


def labels_from_fields(data: dict, path) -> Labels:
    """Validate stored fields (as read, or as made by :func:`labels_to_mat`) into :class:`Labels`.

    Requires ``Pose_Para`` (7 finite values, f > 0), ``Shape_Para`` and ``Exp_Para`` (finite);
    converts ``pt2d`` (when 68 points), ``pt3d_68`` and ``roi`` to the canonical frame.

    Raises:
        InputError: naming ``path`` and the field.
    """
    for name, shape in REQUIRED_SCHEMA.items():
        if name not in data:
            raise InputError(path, f"missing field '{name}'")
        check_field(os.fspath(path), name, data[name], shape)
    for name in _FINITE:
        if name in data:
            check_field(os.fspath(path), name, data[name], None)
    return _labels(data, path)


def _labels(data: dict, path) -> Labels:
    """:func:`labels_from_fields` after its field checks."""
    from face3d_data.w300lp.samples import view_index

    try:
        pose = check_pose_para(data["Pose_Para"], "Pose_Para")
    except ValueError as exc:
        raise InputError(path, str(exc)) from None
    pt2d = pt3d = roi = None
    if "pt2d" in data:
        p = np.asarray(data["pt2d"], np.float64)
        if p.shape == (2, 68):
            pt2d = points_to_canonical(p.T)
        elif p.shape == (68, 2):
            pt2d = points_to_canonical(p)
    if "pt3d_68" in data:
        p = np.asarray(data["pt3d_68"], np.float64)
        if p.shape != (3, 68):
            raise InputError(path, f"field 'pt3d_68' has shape {p.shape}, expected 3×68")
        pt3d = points_to_canonical(p.T)
    if "roi" in data:
        if np.size(data["roi"]) != 4:
            raise InputError(path, f"field 'roi' has shape {np.shape(data['roi'])}, expected 1×4")
        roi = roi_to_canonical(data["roi"])
    view = view_index(Path(os.fspath(path)).stem)
    return Labels(pose_para=pose, shape_para=_column(data["Shape_Para"]),
                  exp_para=_column(data["Exp_Para"]),
                  tex_para=_column(data["Tex_Para"]) if "Tex_Para" in data else None,
                  pt2d=pt2d, pt3d_68=pt3d, roi=roi, pt2d_valid=view in (None, 0), raw=data)


def read_pts_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``landmarks/.../<name>_pts.mat``: (pts_2d, pts_3d), each (68, 2) float64 canonical."""
    data = read_mat(path, required=PTS_SCHEMA)
    return (points_to_canonical(np.asarray(data["pts_2d"], np.float64)),
            points_to_canonical(np.asarray(data["pts_3d"], np.float64)))


def label_vector(fields: dict) -> np.ndarray:
    """The flat float64 label vector of stored fields: 7 ``Pose_Para``, then Ks shape, Ke expression."""
    return np.concatenate([np.ravel(fields["Pose_Para"]), np.ravel(fields["Shape_Para"]),
                           np.ravel(fields["Exp_Para"])]).astype(np.float64)


# ------------------------------------------------------------------- labels and a model
def check_coefficients(model, shape_para, exp_para, path) -> None:
    """Raise :class:`InputError` naming ``path`` when the labels have more modes than ``model``."""
    ks, ke = np.size(shape_para), np.size(exp_para)
    if ks > model.n_shape or ke > model.n_exp:
        raise InputError(path, f"labels have {ks} shape / {ke} expression coefficients; model "
                               f"{model.name!r} has {model.n_shape} / {model.n_exp}")


def model_coefficients(model, labels, path) -> tuple[np.ndarray, np.ndarray]:
    """(shape (Ks,), exp (Ke,)) float64 coefficients of ``labels`` (a :class:`Labels`, or stored
    fields with ``Shape_Para`` and optionally ``Exp_Para``), checked against ``model``'s modes.

    Raises:
        InputError: naming ``path`` when the labels have more modes than the model.
    """
    if isinstance(labels, Labels):
        shape, exp = labels.shape_para, labels.exp_para
    else:
        shape = np.asarray(labels["Shape_Para"], np.float64).ravel()
        exp = np.asarray(labels.get("Exp_Para", np.zeros(0)), np.float64).ravel()
    check_coefficients(model, shape, exp, path)
    return shape, exp


def face_vertices(model, labels: Labels, path) -> np.ndarray:
    """(N, 3) float32 model-space vertices of the labels' ``Shape_Para`` / ``Exp_Para``.

    Raises:
        InputError: naming ``path`` when the coefficients do not fit ``model``.
    """
    check_coefficients(model, labels.shape_para, labels.exp_para, path)
    exp = labels.exp_para if labels.exp_para.size else None
    return model.vertices(labels.shape_para if labels.shape_para.size else None, exp)


def landmarks_from_params(model, labels: Labels, image_hw, path=None) -> np.ndarray:
    """68 landmarks regenerated from ``labels``' parameters with ``model``: (68, 3) float64, canonical
    x, y of the projected landmark vertices and their z (larger = closer).

    Valid for every view (unlike 300W-LP's ``pt2d``). ``model`` must be the one the parameters
    belong to (the BFM for real 300W-LP, the builtin model for this project's synthetic data), or
    its landmark subset ``model.subset(model.landmarks)`` (faster).

    Raises:
        InputError: naming ``path`` when the labels have more coefficients than the model
            (ValueError when ``path`` is None).
    """
    ks, ke = labels.shape_para.size, labels.exp_para.size
    if path is not None:
        check_coefficients(model, labels.shape_para, labels.exp_para, path)
    elif ks > model.n_shape or ke > model.n_exp:
        raise ValueError(f"labels: {ks} shape / {ke} expression coefficients but model "
                         f"{model.name!r} has {model.n_shape} / {model.n_exp}")
    vertices = model.vertices(labels.shape_para if ks else None, labels.exp_para if ke else None)
    return project(vertices[model.landmarks], labels.pose_para, image_hw)


# ------------------------------------------------------------------------------- writing
def _coefficients(value, name: str) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "f":
        a = a.astype(np.float64)
    a = a.reshape(-1, 1)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return a


def labels_to_mat(pose_para, shape_para, exp_para, *, tex_para=None, pt2d=None, pt3d_68=None,
                  roi=None, color_para=None, illum_para=None, extra: dict | None = None) -> dict:
    """Build the fields of a 300W-LP ``.mat`` in its exact stored layout (see :data:`FIELDS`).

    Args:
        pose_para: 7 values. shape_para / exp_para / tex_para: K values each (dtype kept when
            floating, else float64).
        pt2d: (68, 2) canonical (NaN = missing; written (2, 68) 1-based y down).
        pt3d_68: (68, 3) canonical x, y + z (written (3, 68), x/y 1-based y down, float32).
        roi: 4 values [x1, y1, x2, y2], **canonical** (written 1-based, rounded, int16).
        color_para: 7 values (default [1, 1, 1, 0, 0, 0, 1]); illum_para: 10 values (default 0).
        extra: further fields, written as given.
    Returns:
        dict of stored fields: ``Pose_Para`` (1,7) f32, ``Shape_Para`` (Ks,1), ``Exp_Para`` (Ke,1),
        ``Tex_Para`` (Kt,1), ``Color_Para`` (1,7) f32, ``Illum_Para`` (1,10) f64, ``pt2d`` (2,68)
        f64, ``pt3d_68`` (3,68) f32, ``roi`` (1,4) int16.
    """
    pose = check_pose_para(pose_para, "pose_para").astype(np.float32).reshape(1, 7)
    out = {"Pose_Para": pose, "Shape_Para": _coefficients(shape_para, "shape_para"),
           "Exp_Para": _coefficients(exp_para, "exp_para")}
    if tex_para is not None:
        out["Tex_Para"] = _coefficients(tex_para, "tex_para")
    out["Color_Para"] = (_DEFAULT_COLOR.copy() if color_para is None
                         else np.asarray(color_para, np.float32).reshape(1, 7))
    out["Illum_Para"] = (np.zeros((1, 10)) if illum_para is None
                         else np.asarray(illum_para, np.float64).reshape(1, 10))
    if pt2d is not None:
        p = np.asarray(pt2d, np.float64)
        if p.shape != (68, 2):
            raise ValueError(f"pt2d: expected (68, 2) canonical points, got {p.shape}")
        out["pt2d"] = points_to_stored(p).T.copy()
    if pt3d_68 is not None:
        p = np.asarray(pt3d_68, np.float64)
        if p.shape != (68, 3):
            raise ValueError(f"pt3d_68: expected (68, 3), got {p.shape}")
        out["pt3d_68"] = points_to_stored(p).T.astype(np.float32)
    if roi is not None:
        out["roi"] = roi_to_stored(roi)
    out.update(extra or {})
    return out


def write_labels(path: str | os.PathLike, fields: dict) -> None:
    """Write stored 300W-LP fields (from :func:`labels_to_mat`) atomically and deterministically."""
    write_mat(path, fields)


def write_pts_mat(path: str | os.PathLike, pts_2d, pts_3d) -> None:
    """Write a 300W-LP ``_pts.mat``: ``pts_2d``/``pts_3d`` (68, 2) canonical -> 1-based y down."""
    a, b = (np.asarray(p, np.float64) for p in (pts_2d, pts_3d))
    if a.shape != (68, 2) or b.shape != (68, 2):
        raise ValueError(f"pts_2d/pts_3d: expected (68, 2) each, got {a.shape} and {b.shape}")
    write_mat(path, {"pts_2d": points_to_stored(a), "pts_3d": points_to_stored(b)})
