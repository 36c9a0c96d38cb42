"""In-plane rotation of 300W-LP-format samples: the image, and its labels analytically.

Conventions (see ``docs/prnet.md``):

- The image turns about its centre ``c = ((w-1)/2, (h-1)/2)`` in the canonical frame (0-based,
  pixel centres at integer coordinates, y down). A positive angle turns the picture
  **counter-clockwise as displayed** (OpenCV's ``getRotationMatrix2D`` sign).
- The canvas is kept (corners filled) unless ``expand=True``; then the canvas grows to hold the
  whole rotated picture and the centre moves to the new canvas centre.
- Labels are never re-fitted. With the 300W-LP projection ``x_matlab = f·R·S + t`` (1-based,
  y up), a rotation by θ about the camera axis is ``R' = Rz(θ)·R`` and ``(tx, ty)`` moves with the
  pixels; ``tz``, ``f``, ``Shape_Para`` and ``Exp_Para`` do not change. The angles are
  re-extracted in the 300W-LP convention (:mod:`face3d_data.w300lp.pose`).
- Point fields are rotated in their own stored frames, converted to and from the canonical frame
  by :mod:`face3d_data.w300lp.labels` (the one place that states them): ``pt2d`` (2,K) and
  ``pt3d_68`` (3,68) are 1-based y down (``-1`` = missing stays ``-1``; ``pt3d_68``'s z is unchanged); ``roi`` (1,4)
  ``[x1, y1, x2, y2]`` becomes the axis-aligned box of its four rotated corners; the
  ``landmarks/*_pts.mat`` arrays ``pts_2d``/``pts_3d`` (68,2) are treated in the same 1-based
  y-down frame. Every other field is copied unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import cv2
import numpy as np

from face3d_data.w300lp.labels import points_to_canonical, points_to_stored, roi_to_canonical
from face3d_data.w300lp.pose import angles_to_matrix, matrix_to_angles

#: Fields that carry 1-based, y-down image points, with the axis that holds x/y/(z).
_POINT_FIELDS = ("pt2d", "pt3d_68")
_PTS_FIELDS = ("pts_2d", "pts_3d")


@dataclass(frozen=True)
class InPlaneRotation:
    """A rotation of the image plane, as an affine map of canonical pixel coordinates.

    Attributes:
        theta_deg: the angle in degrees, positive = counter-clockwise as displayed.
        matrix: (2, 3) float64; ``p_out = matrix[:, :2] @ p_in + matrix[:, 2]`` for canonical
            ``(x, y)`` points (0-based, y down).
        in_hw: (height, width) of the source image.
        out_hw: (height, width) of the rotated image (equal to ``in_hw`` unless expanded).
    """

    theta_deg: float
    matrix: np.ndarray
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]

    @property
    def linear(self) -> np.ndarray:
        """(2, 2) float64 rotation part, canonical (y-down) frame."""
        return self.matrix[:, :2]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Rotate canonical points ``(..., 2)`` or ``(..., 3)`` (z unchanged); returns float64."""
        p = np.array(points, dtype=np.float64, copy=True)
        if p.ndim < 1 or p.shape[-1] not in (2, 3):
            raise ValueError(f"points must have shape (..., 2) or (..., 3), got {p.shape}")
        xy = p[..., :2] @ self.linear.T + self.matrix[:, 2]
        p[..., :2] = xy
        return p


def in_plane_rotation(theta_deg: float, image_hw: tuple[int, int],
                      expand: bool = False) -> InPlaneRotation:
    """The affine map that rotates an image of size ``image_hw`` by ``theta_deg`` about its centre.

    Args:
        theta_deg: degrees, positive = counter-clockwise as displayed.
        image_hw: (height, width) of the source image, positive integers.
        expand: grow the canvas to the bounding box of the rotated picture.

    Returns:
        :class:`InPlaneRotation`.
    """
    theta = float(theta_deg)
    if not math.isfinite(theta):
        raise ValueError(f"theta_deg must be finite, got {theta_deg!r}")
    try:
        h, w = (int(v) for v in image_hw)
    except (TypeError, ValueError):
        raise ValueError(f"image_hw must be (height, width), got {image_hw!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"image_hw must be positive, got {image_hw!r}")
    rad = math.radians(theta)
    cos, sin = math.cos(rad), math.sin(rad)
    # y-down frame: a point right of the centre moves up for positive theta (CCW as displayed).
    linear = np.array([[cos, sin], [-sin, cos]], dtype=np.float64)
    if expand:
        ac, as_ = abs(round(cos, 12)), abs(round(sin, 12))
        out_w = int(math.ceil(w * ac + h * as_ - 1e-9))
        out_h = int(math.ceil(w * as_ + h * ac - 1e-9))
    else:
        out_h, out_w = h, w
    centre_in = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    centre_out = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0])
    offset = centre_out - linear @ centre_in
    matrix = np.concatenate([linear, offset[:, None]], axis=1)
    return InPlaneRotation(theta, matrix, (h, w), (out_h, out_w))


def rotate_image(image: np.ndarray, rotation: InPlaneRotation, fill=0) -> np.ndarray:
    """Resample ``image`` under ``rotation`` (bilinear).

    Args:
        image: (H, W) or (H, W, C) uint8 or float32, H×W equal to ``rotation.in_hw``.
        fill: a number or per-channel tuple for the uncovered corners (default black), or
            ``"reflect"`` / ``"replicate"`` to extend the picture instead.

    Returns:
        The rotated image, shape ``rotation.out_hw`` (+ channels), same dtype.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or tuple(image.shape[:2]) != tuple(rotation.in_hw):
        raise ValueError(f"image must have shape {rotation.in_hw} (+ channels), got {image.shape}")
    if isinstance(fill, str):
        modes = {"reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}
        if fill not in modes:
            raise ValueError(f"fill must be a number, a colour tuple, 'reflect' or 'replicate', "
                             f"got {fill!r}")
        border, value = modes[fill], 0
    else:
        border = cv2.BORDER_CONSTANT
        value = tuple(float(v) for v in np.broadcast_to(np.asarray(fill, dtype=np.float64),
                                                        (image.shape[2] if image.ndim == 3 else 1,)))
    out_h, out_w = rotation.out_hw
    return cv2.warpAffine(image, rotation.matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=value)


def rotate_pose(pose_para: np.ndarray, rotation: InPlaneRotation) -> np.ndarray:
    """Rotate a 300W-LP ``Pose_Para`` analytically.

    Args:
        pose_para: (7,) ``[pitch, yaw, roll (rad), tx, ty, tz, f]``; any array of 7 elements.
        rotation: the image rotation (its ``in_hw`` / ``out_hw`` give the Matlab frames' heights).

    Returns:
        (7,) float64: angles re-extracted from ``Rz(θ)·R``, ``(tx, ty)`` moved with the pixels,
        ``tz`` and ``f`` unchanged.
    """
    pose = np.asarray(pose_para, dtype=np.float64).reshape(-1)
    if pose.size != 7:
        raise ValueError(f"pose_para must have 7 elements, got {np.asarray(pose_para).shape}")
    if not np.all(np.isfinite(pose)):
        raise ValueError("pose_para contains NaN/inf")
    flip = np.diag([1.0, -1.0])
    rz = np.eye(3)
    rz[:2, :2] = flip @ rotation.linear @ flip  # the same turn seen in the y-up Matlab frame
    r_new = rz @ np.asarray(angles_to_matrix(*pose[:3]), dtype=np.float64)
    # canonical projection = diag(1,-1)·f·(R S)_xy + (tx - 1, h - ty)
    h_in, h_out = rotation.in_hw[0], rotation.out_hw[0]
    offset = np.array([pose[3] - 1.0, h_in - pose[4]])
    offset_new = rotation.linear @ offset + rotation.matrix[:, 2]
    out = pose.copy()
    out[:3] = matrix_to_angles(r_new)
    out[3] = offset_new[0] + 1.0
    out[4] = h_out - offset_new[1]
    return out


def _rotate_one_based(points_xy: np.ndarray, rotation: InPlaneRotation) -> np.ndarray:
    """Rotate (K, 2) 1-based y-down points (``-1`` = missing is kept)."""
    return points_to_stored(rotation.apply(points_to_canonical(points_xy)))


def _rotate_rows(array: np.ndarray, rotation: InPlaneRotation, name: str) -> np.ndarray:
    """Rotate a field stored as (2|3, K) rows of 1-based y-down points, keeping dtype/shape."""
    a = np.asarray(array)
    if a.ndim != 2 or a.shape[0] not in (2, 3):
        raise ValueError(f"{name} must have shape (2, K) or (3, K), got {a.shape}")
    out = a.astype(np.float64, copy=True)
    out[:2] = _rotate_one_based(out[:2].T, rotation).T
    return out.astype(a.dtype) if a.dtype.kind == "f" else out


def _rotate_roi(roi: np.ndarray, rotation: InPlaneRotation) -> np.ndarray:
    """The axis-aligned box of the rotated ``[x1, y1, x2, y2]`` box, same shape and dtype."""
    r = np.asarray(roi)
    if r.size != 4:
        raise ValueError(f"roi must have 4 elements, got shape {r.shape}")
    x1, y1, x2, y2 = roi_to_canonical(r)
    corners = np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]])
    turned = points_to_stored(rotation.apply(corners))  # back to the stored 1-based frame
    lo, hi = np.floor(turned.min(axis=0)), np.ceil(turned.max(axis=0))
    box = np.array([lo[0], lo[1], hi[0], hi[1]])
    if r.dtype.kind in "iu":
        info = np.iinfo(r.dtype)
        box = np.clip(box, info.min, info.max)
    return box.astype(r.dtype).reshape(r.shape)


def rotate_label_fields(fields: Mapping[str, np.ndarray], rotation: InPlaneRotation
                        ) -> dict[str, np.ndarray]:
    """Rotate the fields of a 300W-LP label ``.mat`` (as read, not squeezed).

    ``Pose_Para`` (7 values), ``pt2d``, ``pt3d_68`` and ``roi`` are rotated, each keeping its
    stored shape and dtype; every other field is copied unchanged.
    """
    if "Pose_Para" not in fields:
        raise ValueError("labels have no 'Pose_Para' field")
    out = {name: np.array(value, copy=True) for name, value in fields.items()}
    pose = np.asarray(fields["Pose_Para"])
    out["Pose_Para"] = rotate_pose(pose, rotation).astype(
        pose.dtype if pose.dtype.kind == "f" else np.float64).reshape(pose.shape)
    for name in _POINT_FIELDS:
        if name in fields:
            out[name] = _rotate_rows(fields[name], rotation, name)
    if "roi" in fields:
        out["roi"] = _rotate_roi(fields["roi"], rotation)
    return out


def rotate_pts_fields(fields: Mapping[str, np.ndarray], rotation: InPlaneRotation
                      ) -> dict[str, np.ndarray]:
    """Rotate a ``landmarks/<subset>/<name>_pts.mat`` dict: ``pts_2d``/``pts_3d`` (K, 2)."""
    out = {name: np.array(value, copy=True) for name, value in fields.items()}
    for name in _PTS_FIELDS:
        if name in fields:
            a = np.asarray(fields[name])
            if a.ndim != 2 or a.shape[1] != 2:
                raise ValueError(f"{name} must have shape (K, 2), got {a.shape}")
            out[name] = _rotate_one_based(a, rotation).astype(
                a.dtype if a.dtype.kind == "f" else np.float64)
    return out


@dataclass(frozen=True)
class RotatedSample:
    """One rotated sample.

    Attributes:
        image: (H', W', 3) uint8 rotated image.
        labels: the rotated label fields, 300W-LP layout (same shapes/dtypes as the input).
        pts: the rotated ``_pts.mat`` fields, or None when none were given.
        rotation: the :class:`InPlaneRotation` used (pivot and matrix, for manifests).
    """

    image: np.ndarray
    labels: dict
    pts: dict | None
    rotation: InPlaneRotation


def rotate_sample(image: np.ndarray, labels: Mapping[str, np.ndarray], theta_deg: float, *,
                  pts: Mapping[str, np.ndarray] | None = None, expand: bool = False,
                  fill=0) -> RotatedSample:
    """Rotate an image and its 300W-LP labels by ``theta_deg`` (CCW as displayed) about its centre.

    Args:
        image: (H, W, 3) uint8 RGB, canonical frame.
        labels: the label ``.mat`` fields as stored (``Pose_Para`` required).
        theta_deg: degrees, positive = counter-clockwise as displayed.
        pts: optional ``landmarks/*_pts.mat`` fields.
        expand: grow the canvas to hold the whole rotated picture.
        fill: corner fill (see :func:`rotate_image`).
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must have shape (H, W, C), got {image.shape}")
    rotation = in_plane_rotation(theta_deg, image.shape[:2], expand=expand)
    return RotatedSample(
        image=rotate_image(image, rotation, fill=fill),
        labels=rotate_label_fields(labels, rotation),
        pts=None if pts is None else rotate_pts_fields(pts, rotation),
        rotation=rotation,
    )


def angle_suffix(theta_deg: float) -> str:
    """File-name suffix for an angle: ``_angle_15``, ``_angle_-30``, ``_angle_7.5``."""
    theta = float(theta_deg)
    text = str(int(theta)) if theta.is_integer() else repr(theta)
    return f"_angle_{text}"


def parse_fill(text) -> object:
    """A corner fill from text: ``"0"``..``"255"`` (grey), ``"R,G,B"``, ``"reflect"`` or ``"replicate"``.

    Returns:
        a float, an (R, G, B) tuple of floats, or the mode name (for :func:`rotate_image`).
    Raises:
        ValueError: anything else.
    """
    value = str(text).strip().lower()
    if value in ("reflect", "replicate"):
        return value
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        raise ValueError(f"fill: expected a grey level, 'R,G,B', reflect or replicate, got {text!r}") from None
    if len(parts) not in (1, 3) or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"fill: expected one or three values in 0..255, got {text!r}")
    return tuple(parts) if len(parts) == 3 else parts[0]
