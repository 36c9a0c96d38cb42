"""Out-of-plane views of a registered scan (FG3D-style augmentation) and pictures of registrations.

A view renders the registered mesh (model frame, pose-free; colours sampled from the scan) with a
300W-LP ``Pose_Para`` built from (pitch, yaw, roll): ``f`` and ``t`` put the face region's
centre at the image centre with its largest projected extent at ``fill`` × the image size. The
registered mesh is then posed with exactly that ``Pose_Para``
(:func:`face3d_data.w300lp.project`), so the labels of a view are reproducible from the written
``Pose_Para`` and ``vertices_model``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from face3d_data.render import render_attributes
from face3d_data.render.maps import vertex_visibility
from face3d_data.w300lp import angles_to_matrix, project, srt_to_pose_para


def parse_angles(spec) -> list[float]:
    """Angles from ``"0:90:15"`` (start:stop:step, stop included), ``"-30,0,15"`` or a list of numbers."""
    if isinstance(spec, (list, tuple)):
        out = []
        for part in spec:
            out += parse_angles(str(part)) if isinstance(part, str) else [float(part)]
        return out
    text = str(spec).strip()
    if ":" in text:
        parts = [float(p) for p in text.split(":")]
        if len(parts) != 3 or parts[2] == 0:
            raise ValueError(f"angles {spec!r}: expected start:stop:step with a non-zero step")
        start, stop, step = parts
        n = int(np.floor((stop - start) / step + 1e-9)) + 1
        return [start + k * step for k in range(max(n, 0))]
    return [float(p) for p in text.replace(" ", ",").split(",") if p]


def view_pose(vertices_model: np.ndarray, face_mask: np.ndarray, size: int, pitch_deg: float, yaw_deg: float,
              roll_deg: float = 0.0, fill: float = 0.8) -> np.ndarray:
    """``Pose_Para`` (7,) framing the face region of ``vertices_model`` in a ``size``² image.

    Args:
        vertices_model: (N, 3) model frame (x right, y up, z towards the viewer).
        face_mask: (N,) bool vertices that define the framing (e.g. cheeks + features).
    """
    R = angles_to_matrix(np.deg2rad(pitch_deg), np.deg2rad(yaw_deg), np.deg2rad(roll_deg))
    face = np.asarray(vertices_model, np.float64)[np.asarray(face_mask, bool)]
    rot = face @ R.T
    centre = 0.5 * (rot.min(0) + rot.max(0))
    extent = float(np.max(rot.max(0)[:2] - rot.min(0)[:2]))
    f = fill * size / max(extent, 1e-12)
    c = (size + 1) / 2.0                    # canonical centre (size - 1) / 2 in the 1-based, y-up frame
    t = np.array([c - f * centre[0], c - f * centre[1], -f * centre[2]])
    return srt_to_pose_para(f, R, t)


@dataclasses.dataclass
class View:
    """One rendered view: image, the posed mesh (canonical image frame) and its per-vertex flags."""

    image: np.ndarray           # (S, S, 3) uint8
    mask: np.ndarray            # (S, S) bool face pixels
    pose_para: np.ndarray       # (7,)
    projected: np.ndarray       # (N, 3) canonical image frame, z larger = closer
    visible: np.ndarray         # (N,) bool


def render_view(vertices_model, triangles, colors, pose_para, size: int, background=None) -> View:
    """Render ``vertices_model`` with per-vertex ``colors`` ((N, 3) in [0, 1]) at ``pose_para``.

    Colours are interpolated by the z-buffer (:func:`face3d_data.render.render_attributes`), so a
    pixel at a vertex's projection shows that vertex's colour. ``background``: (S, S, 3) uint8 or None (black).
    """
    proj = project(np.asarray(vertices_model, np.float64), pose_para, (size, size))
    attrs = np.concatenate([np.asarray(colors, np.float32) * 255.0, np.ones((len(proj), 1), np.float32)], 1)
    out = render_attributes(proj.astype(np.float32), triangles, attrs, size, size)
    cover = out[..., 3:4] > 0.5
    bg = np.zeros((size, size, 3), np.float32) if background is None else np.asarray(background, np.float32)
    img = np.where(cover, out[..., :3], bg)
    vis = vertex_visibility(proj.astype(np.float32), triangles, size, size)
    return View(np.clip(img + 0.5, 0, 255).astype(np.uint8), cover[..., 0], np.asarray(pose_para), proj, vis)


def distance_colors(distance_mm: np.ndarray, valid: np.ndarray, hi_mm: float = 2.0) -> np.ndarray:
    """(N, 3) float32 heat colours: blue (0 mm) -> red (``hi_mm`` and above); invalid vertices grey."""
    import cv2

    d = np.clip(np.nan_to_num(np.asarray(distance_mm, np.float64), nan=hi_mm, posinf=hi_mm) / hi_mm, 0, 1)
    gray = np.round(d * 255).astype(np.uint8).reshape(-1, 1)
    rgb = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB).reshape(-1, 3) / 255.0
    rgb[~np.asarray(valid, bool)] = 0.45
    return rgb.astype(np.float32)


def shaded_colors(vertices_model, triangles, base=(0.8, 0.8, 0.8)) -> np.ndarray:
    """(N, 3) float32 simple Lambert shading (light from the viewer) for a grey picture of a mesh."""
    from face3d_data.registration.surface import vertex_normals

    n = vertex_normals(vertices_model, triangles)
    lam = np.clip(0.25 + 0.75 * np.abs(n[:, 2]), 0, 1)[:, None]
    return (lam * np.asarray(base)[None, :]).astype(np.float32)


def distance_picture(vertices_model, triangles, distance_mm, valid, size: int = 256, yaw_deg: float = 20.0,
                     hi_mm: float = 2.0, label: str | None = None) -> np.ndarray:
    """A picture of a registration: the mesh coloured by distance to the scan (see :func:`distance_colors`)."""
    from face3d_data.viz import put_label

    v = np.asarray(vertices_model, np.float64)
    pose = view_pose(v, np.ones(len(v), bool), size, 0.0, yaw_deg, fill=0.9)
    img = render_view(v, triangles, distance_colors(distance_mm, valid, hi_mm), pose, size).image
    return put_label(img, label) if label else img
