"""300W-LP pose algebra (``face3d_data.w300lp.pose``): ``Pose_Para``, rotation conventions, projection to the
canonical frame.

``Pose_Para = [pitch, yaw, roll (rad), tx, ty, tz, f]`` (300W-LP / 3DDFA). The rotation is

    R = [Rz(roll) · Ry(yaw) · Rx(pitch)]ᵀ

with the standard right-handed elementary rotations, and a model-space point S (x right, y up,
z towards the viewer) projects to the 1-based, y-up Matlab image frame as ``x_m = f·R·S + t``.
:func:`project` converts that to the canonical frame (0-based, y down, pixel centres at integer
coordinates): ``x = x_m - 1``, ``y = H - y_m``; ``z = f·(R·S)_z + tz`` (larger = closer).

Angle conventions (each returns the matrix that convention applies as ``R @ p``):

- ``"300wlp"``: radians, R = (Rz·Ry·Rx)ᵀ (also 3DDFA's ``angle2matrix_3ddfa``).
- ``"face3d"``: **degrees**, R = Rz·Ry·Rx (face3d ``mesh.transform.angle2matrix``).
- ``"deep3d"``: radians, R = Rz·Ry·Rx (Deep3DFaceRecon ``compute_rotation``, applied there as
  ``pts @ Rᵀ``).

Angles are always given and returned in the order (pitch, yaw, roll) = rotations about (x, y, z).
"""

from __future__ import annotations

import numpy as np

from face3d_data.coords import canonical_to_matlab, matlab_to_canonical

CONVENTIONS = ("300wlp", "face3d", "deep3d")


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention: expected one of {CONVENTIONS}, got {convention!r}")


def _rzyx(pitch, yaw, roll) -> np.ndarray:
    """Rz(roll)·Ry(yaw)·Rx(pitch) for broadcastable angle arrays (radians) -> (..., 3, 3) float64."""
    p, y, r = (np.asarray(a, dtype=np.float64) for a in (pitch, yaw, roll))
    if p.ndim or y.ndim or r.ndim:   # scalars (one pose) need no broadcasting
        p, y, r = np.broadcast_arrays(p, y, r)
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    m = np.empty(p.shape + (3, 3))
    m[..., 0, 0] = cr * cy
    m[..., 0, 1] = cr * sy * sp - sr * cp
    m[..., 0, 2] = cr * sy * cp + sr * sp
    m[..., 1, 0] = sr * cy
    m[..., 1, 1] = sr * sy * sp + cr * cp
    m[..., 1, 2] = sr * sy * cp - cr * sp
    m[..., 2, 0] = -sy
    m[..., 2, 1] = cy * sp
    m[..., 2, 2] = cy * cp
    return m


def _angles_of_rzyx(m: np.ndarray):
    """Inverse of :func:`_rzyx`: (pitch, yaw, roll) radians with yaw in [-pi/2, pi/2].

    At gimbal lock (|yaw| = 90°) only pitch ∓ roll is determined; roll is set to 0 then.
    """
    m = np.asarray(m, dtype=np.float64)
    sy = np.clip(-m[..., 2, 0], -1.0, 1.0)
    yaw = np.arcsin(sy)
    cy = np.sqrt(m[..., 0, 0] ** 2 + m[..., 1, 0] ** 2)
    if m.ndim == 2:   # one matrix: only the branch that applies (np.where computes both); same values
        if cy > 1e-9:
            return np.arctan2(m[2, 1], m[2, 2]), yaw, np.arctan2(m[1, 0], m[0, 0])
        return np.arctan2(sy * m[0, 1], m[1, 1]), yaw, 0.0
    regular = cy > 1e-9
    pitch = np.where(regular, np.arctan2(m[..., 2, 1], m[..., 2, 2]),
                     np.arctan2(sy * m[..., 0, 1], m[..., 1, 1]))
    roll = np.where(regular, np.arctan2(m[..., 1, 0], m[..., 0, 0]), 0.0)
    return pitch, yaw, roll


def _check_rotation(R, name: str = "R") -> np.ndarray:
    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected (..., 3, 3) rotation matrices, got shape {R.shape}")
    if not np.all(np.isfinite(R)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return R


def angles_to_matrix(pitch, yaw, roll, convention: str = "300wlp") -> np.ndarray:
    """Rotation matrix from angles in ``convention`` (see module docstring).

    Args:
        pitch, yaw, roll: scalars or broadcastable arrays; radians ("300wlp", "deep3d") or
            degrees ("face3d").
    Returns:
        (3, 3) float64 (or (..., 3, 3) for arrays), the matrix applied as ``R @ p``.
    """
    _check_convention(convention)
    angles = [np.asarray(a, dtype=np.float64) for a in (pitch, yaw, roll)]
    if not all(np.isfinite(a).all() for a in angles):
        raise ValueError("pitch/yaw/roll: contain NaN or infinite values")
    if convention == "face3d":
        angles = [np.deg2rad(a) for a in angles]
    return _rotation_300wlp(*angles) if convention == "300wlp" else _rzyx(*angles)


def _rotation_300wlp(pitch, yaw, roll) -> np.ndarray:
    """The "300wlp" matrix (Rz·Ry·Rx)ᵀ of finite float64 angles (radians), unchecked."""
    return np.swapaxes(_rzyx(pitch, yaw, roll), -1, -2).copy()


def matrix_to_angles(R, convention: str = "300wlp"):
    """Angles (pitch, yaw, roll) of rotation ``R`` in ``convention``; inverse of :func:`angles_to_matrix`.

    ``R`` is (3, 3) or (..., 3, 3); returns a tuple of three floats (or arrays). Yaw lies in
    [-90°, 90°]. ``R`` should be orthonormal; use :func:`orthonormalize` on a fitted matrix first.
    """
    _check_convention(convention)
    R = _check_rotation(R)
    m = np.swapaxes(R, -1, -2) if convention == "300wlp" else R
    angles = _angles_of_rzyx(m)
    if convention == "face3d":
        angles = tuple(np.rad2deg(a) for a in angles)
    return tuple(float(a) if np.ndim(a) == 0 else a for a in angles)


def convert_angles(pitch, yaw, roll, source: str, target: str):
    """Re-express the *same rotation* given as angles in ``source`` as angles in ``target``."""
    return matrix_to_angles(angles_to_matrix(pitch, yaw, roll, source), target)


def orthonormalize(R) -> np.ndarray:
    """Nearest rotation matrix (Frobenius norm) to ``R`` by SVD, with det = +1.

    Args:
        R: (3, 3) or (..., 3, 3), e.g. the scaled-orthographic rotation from an affine fit.
    Returns:
        float64 rotation matrices of the same shape.
    """
    R = _check_rotation(R)
    u, _, vt = np.linalg.svd(R)
    d = np.sign(np.linalg.det(u @ vt))
    d = np.where(d == 0, 1.0, d)
    u = u.copy()
    u[..., :, 2] *= d[..., None]
    return u @ vt


# ---------------------------------------------------------------------------- Pose_Para
def check_pose_para(pose_para, name: str = "pose_para") -> np.ndarray:
    """Validate a 300W-LP ``Pose_Para``: 7 finite values with f > 0 (any (1,7)/(7,1) layout), or (B, 7).

    Returns (7,) or (B, 7) float64.
    """
    arr = np.asarray(pose_para, dtype=np.float64)
    if arr.size == 7:
        arr = arr.reshape(7)
    elif arr.ndim != 2 or arr.shape[1] != 7:
        raise ValueError(f"{name}: expected 7 values [pitch, yaw, roll, tx, ty, tz, f] or (B, 7), "
                         f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    if (arr[..., 6] <= 0).any():
        raise ValueError(f"{name}: scale f (element 7) must be positive")
    return arr


def pose_para_to_srt(pose_para):
    """Split ``Pose_Para`` into (f, R, t): scale (float or (B,)), (3,3) or (B,3,3) R, (3,) or (B,3) t.

    ``R`` is the 300W-LP matrix (applied as ``R @ S``); ``t`` is in the Matlab y-up 1-based frame.
    """
    return _srt(check_pose_para(pose_para))


def _srt(p: np.ndarray):
    """:func:`pose_para_to_srt` of an already checked (7,) or (B, 7) float64 ``Pose_Para``."""
    R = _rotation_300wlp(p[..., 0], p[..., 1], p[..., 2])
    f = p[..., 6]
    return (float(f) if np.ndim(f) == 0 else f), R, p[..., 3:6].copy()


def srt_to_pose_para(f, R, t) -> np.ndarray:
    """Build ``Pose_Para`` (7,) float64 from scale ``f``, 300W-LP rotation ``R`` (orthonormal) and ``t`` (3,)."""
    R = _check_rotation(R)
    pitch, yaw, roll = matrix_to_angles(R, "300wlp")
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if t.size == 2:
        t = np.append(t, 0.0)
    if t.size != 3:
        raise ValueError(f"t: expected 2 or 3 values, got {t.size}")
    return check_pose_para(np.array([pitch, yaw, roll, t[0], t[1], t[2], float(f)]))


def transform(vertices, pose_para) -> np.ndarray:
    """``f·R·S + t`` in the 300W-LP Matlab frame (1-based, y up), before any image conversion.

    Args:
        vertices: (N, 3) or (B, N, 3) model-space points.
        pose_para: (7,) or (B, 7).
    Returns:
        float64 array of the same shape as ``vertices``.
    """
    v = np.asarray(vertices, dtype=np.float64)
    if v.ndim not in (2, 3) or v.shape[-1] != 3:
        raise ValueError(f"vertices: expected (N, 3) or (B, N, 3), got shape {v.shape}")
    p = check_pose_para(pose_para)
    if p.ndim == 2 and (v.ndim != 3 or v.shape[0] != p.shape[0]):
        if not (v.ndim == 2 or v.shape[0] == 1):
            raise ValueError(f"pose_para: batch of {p.shape[0]} does not match vertices {v.shape}")
    f, R, t = _srt(p)
    f = np.asarray(f)[..., None, None]
    return f * (v @ np.swapaxes(R, -1, -2)) + t[..., None, :]


def project(vertices, pose_para, image_hw) -> np.ndarray:
    """Project model-space vertices with a 300W-LP ``Pose_Para`` into the canonical image frame.

    Args:
        vertices: (N, 3) or (B, N, 3) model space (x right, y up, z towards the viewer).
        pose_para: (7,) [pitch, yaw, roll (rad), tx, ty, tz, f] (any 7-element layout) or (B, 7).
        image_hw: (height, width) of the image the pose refers to.
    Returns:
        float64 (N, 3) or (B, N, 3): x, y canonical (0-based, y down, pixel centres at integers),
        z = f·(R·S)_z + tz (larger = closer to the camera).
    """
    return matlab_to_canonical(transform(vertices, pose_para), _image_height(image_hw))


def unproject_xy(points, image_hw) -> np.ndarray:
    """Canonical (..., 2|3) points back to the 300W-LP Matlab frame (1-based, y up); z untouched."""
    return canonical_to_matlab(np.asarray(points, dtype=np.float64), _image_height(image_hw))


def _image_height(image_hw) -> float:
    if type(image_hw) is tuple and len(image_hw) >= 2 and type(image_hw[0]) is int \
            and type(image_hw[1]) is int and image_hw[0] > 0 and image_hw[1] > 0:
        return float(image_hw[0])   # an image's shape[:2]: nothing to convert
    hw = np.asarray(image_hw, dtype=np.float64).ravel()
    if hw.size < 2 or not np.isfinite(hw[:2]).all() or (hw[:2] <= 0).any():
        raise ValueError(f"image_hw: expected (height, width) > 0, got {image_hw!r}")
    return float(hw[0])
