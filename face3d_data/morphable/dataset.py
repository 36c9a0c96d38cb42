"""300W-LP-format datasets: find image/label pairs, read and validate labels, write them back.

Layout (formats.md §2.1–2.2): ``300W_LP/{AFW,HELEN,IBUG,LFPW}[_Flip]/<name>.jpg`` + ``<name>.mat``
and ``300W_LP/landmarks/<subset>/<name>_pts.mat``. Any folder tree of ``.jpg``/``.mat`` pairs works
the same way (the project's synthetic, fitted and rotated outputs use ``<dir>/<name>.jpg``,
``<dir>/<name>.mat`` and ``<dir>/landmarks/<name>_pts.mat``).

Frames: every array returned here is in the canonical frame (0-based, x right, y down). On disk,
``pt2d`` is (2, 68) 1-based y down, ``pt3d_68`` is (3, 68) with x, y 1-based y down, and the
``_pts.mat`` files hold ``pts_2d``/``pts_3d`` as (68, 2) 1-based y down.

The trap (formats.md §2.1): in 300W-LP, ``pt2d`` and ``roi`` are the original annotation and are
only valid for view ``_0``; :attr:`Labels.pt2d_valid` says so, and :func:`landmarks_from_params`
regenerates landmarks for any view from the 3DMM parameters.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from face3d_data.coords import canonical_to_pt2d, pt2d_to_canonical
from face3d_data.errors import InputError
from face3d_data.io import PHOTO_EXTENSIONS, read_mat, write_mat
from face3d_data.morphable.pose import check_pose_para, project

#: 300W-LP sample names: <subset>_<image id>_<face>_<view>; pt2d is the original annotation.
_300WLP_NAME = re.compile(r"^(AFW|HELEN|IBUG|LFPW)_.+_(\d+)_(\d+)$", re.IGNORECASE)
LABEL_SCHEMA = {"Pose_Para": (7,), "Shape_Para": (None,), "Exp_Para": (None,)}


@dataclass(frozen=True)
class Sample:
    """One image/label pair. ``key``: path relative to the root without extension, '/'-separated."""
    key: str
    image_path: Path
    mat_path: Path
    pts_path: Path | None = None


@dataclass
class Labels:
    """Validated 300W-LP labels (canonical frame).

    Attributes:
        pose_para: (7,) float64 [pitch, yaw, roll (rad), tx, ty, tz, f].
        shape_para: (Ks,) float64; exp_para: (Ke,) float64; tex_para: (Kt,) float64 or None.
        pt2d: (68, 2) canonical, or None when absent / not 68 points (AFLW2000 stores 21).
        pt3d_68: (68, 3) canonical x, y and z, or None.
        pt2d_valid: False for 300W-LP views other than ``_0`` (their ``pt2d`` is the view-0 annotation).
        raw: every field as stored in the file.
    """
    pose_para: np.ndarray
    shape_para: np.ndarray
    exp_para: np.ndarray
    tex_para: np.ndarray | None = None
    pt2d: np.ndarray | None = None
    pt3d_68: np.ndarray | None = None
    pt2d_valid: bool = True
    raw: dict = field(default_factory=dict, repr=False)


def view_index(name: str) -> int | None:
    """The 300W-LP view number ``k`` of ``<subset>_<id>_<face>_<k>`` names, else None."""
    m = _300WLP_NAME.match(Path(name).stem)
    return int(m.group(3)) if m else None


def find_samples(root: str | os.PathLike) -> list[Sample]:
    """Every ``<name>.<jpg|jpeg|png>`` with a ``<name>.mat`` beside it under ``root``, sorted by key.

    Hidden folders and ``landmarks`` folders are not searched for pairs; each sample's
    ``_pts.mat`` is looked up as ``<root>/landmarks/<rel dir>/<name>_pts.mat`` (300W-LP) or
    ``<dir>/landmarks/<name>_pts.mat`` (this project's outputs).

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset root is not a folder")
    samples = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "landmarks")
        here = Path(dirpath)
        mats = {f[:-4] for f in filenames if f.endswith(".mat") and not f.endswith("_pts.mat")}
        for f in sorted(filenames):
            stem, ext = os.path.splitext(f)
            if ext.lower() not in PHOTO_EXTENSIONS or stem not in mats or f.startswith("."):
                continue
            rel = (here / stem).relative_to(root)
            pts = _find_pts(root, here, rel, stem)
            samples.append(Sample(rel.as_posix(), here / f, here / f"{stem}.mat", pts))
    samples.sort(key=lambda s: s.key)
    return samples


def _find_pts(root: Path, here: Path, rel: Path, stem: str) -> Path | None:
    for cand in (root / "landmarks" / rel.parent / f"{stem}_pts.mat",
                 here / "landmarks" / f"{stem}_pts.mat"):
        if cand.is_file():
            return cand
    return None


def _column(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64).reshape(-1)


def read_labels(mat_path: str | os.PathLike) -> Labels:
    """Read and validate one 300W-LP / AFLW2000-3D label file.

    Requires ``Pose_Para`` (7 values, f > 0), ``Shape_Para`` and ``Exp_Para`` (finite); converts
    ``pt2d`` (when 2×68) and ``pt3d_68`` to the canonical frame.

    Raises:
        InputError: naming the file and the field.
    """
    data = read_mat(mat_path, required=LABEL_SCHEMA, finite=["Tex_Para", "pt3d_68", "roi"])
    try:
        pose = check_pose_para(data["Pose_Para"], "Pose_Para")
    except ValueError as exc:
        raise InputError(mat_path, str(exc)) from None
    pt2d = pt3d = None
    if "pt2d" in data:
        p = np.asarray(data["pt2d"], np.float64)
        if p.shape == (2, 68):
            pt2d = pt2d_to_canonical(p.T)
        elif p.shape == (68, 2):
            pt2d = pt2d_to_canonical(p)
    if "pt3d_68" in data:
        p = np.asarray(data["pt3d_68"], np.float64)
        if p.shape != (3, 68):
            raise InputError(mat_path, f"field 'pt3d_68' has shape {p.shape}, expected 3×68")
        pt3d = pt2d_to_canonical(p.T)
    view = view_index(Path(mat_path).stem)
    return Labels(pose_para=pose, shape_para=_column(data["Shape_Para"]),
                  exp_para=_column(data["Exp_Para"]),
                  tex_para=_column(data["Tex_Para"]) if "Tex_Para" in data else None,
                  pt2d=pt2d, pt3d_68=pt3d, pt2d_valid=view in (None, 0), raw=data)


def read_pts_mat(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read ``landmarks/.../<name>_pts.mat``: (pts_2d, pts_3d), each (68, 2) canonical."""
    data = read_mat(path, required={"pts_2d": (68, 2), "pts_3d": (68, 2)})
    return (pt2d_to_canonical(np.asarray(data["pts_2d"], np.float64)),
            pt2d_to_canonical(np.asarray(data["pts_3d"], np.float64)))


def landmarks_from_params(model, labels: Labels, image_hw) -> np.ndarray:
    """68 landmarks (canonical, (68, 2)) regenerated from ``labels``' parameters with ``model``.

    Valid for every view (unlike 300W-LP's ``pt2d``). ``model`` must be the one the parameters
    belong to (the BFM for real 300W-LP, the builtin model for this project's synthetic data).
    """
    ks, ke = labels.shape_para.size, labels.exp_para.size
    if ks > model.n_shape or ke > model.n_exp:
        raise ValueError(f"labels: {ks} shape / {ke} expression coefficients but model "
                         f"{model.name!r} has {model.n_shape} / {model.n_exp}")
    sub = model.vertices(labels.shape_para, labels.exp_para)[model.landmarks]
    return project(sub, labels.pose_para, image_hw)[:, :2]


def labels_to_mat(pose_para, shape_para, exp_para, *, tex_para=None, pt2d=None, pt3d_68=None,
                  roi=None, color_para=None, illum_para=None, extra: dict | None = None) -> dict:
    """Build the fields of a 300W-LP ``.mat`` in its exact layout.

    Args:
        pose_para: 7 values. shape_para / exp_para / tex_para: K values each.
        pt2d: (68, 2) canonical (written (2, 68) 1-based y down).
        pt3d_68: (68, 3) canonical x, y + z (written (3, 68), x/y 1-based y down, float32).
        roi: 4 values [x1, y1, x2, y2] (int16).
        color_para: 7 values (default [1, 1, 1, 0, 0, 0, 1]); illum_para: 10 values (default 0).
        extra: further fields, written as given.
    Returns:
        dict: ``Pose_Para`` (1,7) f32, ``Shape_Para`` (Ks,1), ``Exp_Para`` (Ke,1), ``Tex_Para``
        (Kt,1), ``Color_Para`` (1,7) f32, ``Illum_Para`` (1,10) f64, ``pt2d`` (2,68) f64,
        ``pt3d_68`` (3,68) f32, ``roi`` (1,4) int16. Coefficient dtypes are kept (float32 or float64).
    """
    pose = check_pose_para(pose_para, "pose_para").astype(np.float32).reshape(1, 7)

    def col(v, name):
        a = np.asarray(v)
        if a.dtype.kind not in "f":
            a = a.astype(np.float64)
        a = a.reshape(-1, 1)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains NaN or infinite values")
        return a

    out = {"Pose_Para": pose, "Shape_Para": col(shape_para, "shape_para"),
           "Exp_Para": col(exp_para, "exp_para")}
    if tex_para is not None:
        out["Tex_Para"] = col(tex_para, "tex_para")
    out["Color_Para"] = (np.array([[1, 1, 1, 0, 0, 0, 1]], np.float32) if color_para is None
                         else np.asarray(color_para, np.float32).reshape(1, 7))
    out["Illum_Para"] = (np.zeros((1, 10)) if illum_para is None
                         else np.asarray(illum_para, np.float64).reshape(1, 10))
    if pt2d is not None:
        p = np.asarray(pt2d, np.float64)
        if p.shape != (68, 2):
            raise ValueError(f"pt2d: expected (68, 2) canonical points, got {p.shape}")
        out["pt2d"] = canonical_to_pt2d(p).T.copy()
    if pt3d_68 is not None:
        p = np.asarray(pt3d_68, np.float64)
        if p.shape != (68, 3):
            raise ValueError(f"pt3d_68: expected (68, 3), got {p.shape}")
        out["pt3d_68"] = canonical_to_pt2d(p).T.astype(np.float32)
    if roi is not None:
        out["roi"] = np.round(np.asarray(roi, np.float64)).astype(np.int16).reshape(1, 4)
    out.update(extra or {})
    return out


def write_labels(path: str | os.PathLike, fields: dict) -> None:
    """Write 300W-LP fields (from :func:`labels_to_mat`) to ``path`` atomically and deterministically."""
    write_mat(path, fields)


def write_pts_mat(path: str | os.PathLike, pts_2d, pts_3d) -> None:
    """Write a 300W-LP ``_pts.mat``: ``pts_2d``/``pts_3d`` (68, 2) canonical -> 1-based y down."""
    a, b = (np.asarray(p, np.float64) for p in (pts_2d, pts_3d))
    if a.shape != (68, 2) or b.shape != (68, 2):
        raise ValueError(f"pts_2d/pts_3d: expected (68, 2) each, got {a.shape} and {b.shape}")
    write_mat(path, {"pts_2d": canonical_to_pt2d(a), "pts_3d": canonical_to_pt2d(b)})
