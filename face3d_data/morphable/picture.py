"""Pictures of a model for people: the mean and ±kσ of its first modes, with landmarks."""

from __future__ import annotations

import numpy as np

from face3d_data.morphable.model import MorphableModel
from face3d_data.morphable.pose import project
from face3d_data.morphable.synth import render_face


def _studio_light() -> np.ndarray:
    sh = np.zeros((9, 3), np.float32)
    sh[0], sh[1], sh[2], sh[3] = 0.68, 0.18, 0.38, -0.1
    return sh


def render_view(model: MorphableModel, shape_para=None, exp_para=None, tex_para=None, *,
                yaw_deg: float = 0.0, size: int = 256, landmarks: bool = True) -> np.ndarray:
    """One (size, size, 3) uint8 render of the model at the given coefficients and yaw, grey background."""
    from face3d_data.viz import draw_landmarks

    v = model.vertices(shape_para, exp_para)
    lm = v[model.landmarks]
    height = float(np.ptp(v[:, 1]))
    centre = (v.max(0) + v.min(0)) / 2
    f = 0.9 * size / height
    pose = np.array([0.0, np.deg2rad(yaw_deg), 0.0, 0.0, 0.0, 0.0, f])
    from face3d_data.morphable.pose import angles_to_matrix
    c = f * angles_to_matrix(0.0, pose[1], 0.0) @ centre
    pose[3], pose[4] = (size + 1) / 2 - c[0], (size + 1) / 2 - c[1]
    albedo = model.colors(tex_para) if model.tex_mean is not None else np.full((model.n_vertices, 3), 200.0)
    bg = np.full((size, size, 3), 90, np.uint8)
    projected = project(v, pose, (size, size))
    img, _ = render_face(model, v, albedo, pose, size, _studio_light(), bg, projected)
    if landmarks:
        img = draw_landmarks(img, project(lm, pose, (size, size))[:, :2], radius=1)
    return img


def mode_sheet(model: MorphableModel, n_shape: int = 4, n_exp: int = 4, n_tex: int = 0,
               sigma: float = 3.0, size: int = 160) -> np.ndarray:
    """Contact sheet: each row is one mode at -σ·k, mean, +σ·k (k = ``sigma``), frontal.

    Returns (rows·size, 3·size, 3) uint8 with captions.
    """
    from face3d_data.viz import contact_sheet

    tiles, labels = [], []
    rows = ([("shape", k) for k in range(min(n_shape, model.n_shape))]
            + [("exp", k) for k in range(min(n_exp, model.n_exp))]
            + [("tex", k) for k in range(min(n_tex, model.n_tex))])
    for part, k in rows:
        for s in (-sigma, 0.0, sigma):
            std = {"shape": model.shape_std, "exp": model.exp_std, "tex": model.tex_std}[part]
            c = np.zeros(len(std))
            c[k] = s * std[k]
            kw = {"shape": dict(shape_para=c), "exp": dict(exp_para=c), "tex": dict(tex_para=c)}[part]
            tiles.append(render_view(model, size=size, **kw))
            labels.append(f"{part} {k} {s:+.0f}σ" if s else "mean")
    return contact_sheet(tiles, ncols=3, labels=labels, tile_size=size)
