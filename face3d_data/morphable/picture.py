"""Pictures of a model for people: the mean and ±kσ of its first modes, with landmarks."""

from __future__ import annotations

import numpy as np

from face3d_data.morphable.model import MorphableModel
from face3d_data.w300lp.pose import project
from face3d_data.w300lp.synth import render_face


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
    from face3d_data.w300lp.pose import angles_to_matrix
    c = f * angles_to_matrix(0.0, pose[1], 0.0) @ centre
    pose[3], pose[4] = (size + 1) / 2 - c[0], (size + 1) / 2 - c[1]
    albedo = model.colors(tex_para) if model.tex_mean is not None else np.full((model.n_vertices, 3), 200.0)
    bg = np.full((size, size, 3), 90, np.uint8)
    projected = project(v, pose, (size, size))
    img, _ = render_face(model, v, albedo, pose, size, _studio_light(), bg, projected)
    if landmarks:
        img = draw_landmarks(img, project(lm, pose, (size, size))[:, :2], radius=1, connect=False)
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
            labels.append(f"{part} {k} {s:+.0f} sd" if s else "mean")
    return contact_sheet(tiles, ncols=3, labels=labels, tile_size=size)


def views_strip(model: MorphableModel, yaws=(-90, -45, 0, 45, 90), size: int = 160) -> np.ndarray:
    """The mean face at several yaws with its 68 landmarks, side by side."""
    from face3d_data.viz import contact_sheet

    tiles = [render_view(model, yaw_deg=y, size=size) for y in yaws]
    return contact_sheet(tiles, ncols=len(tiles), labels=[f"yaw {y:+d} deg" for y in yaws], tile_size=size)


def synthetic_sheet(model: MorphableModel, count: int = 16, size: int = 112, seed: int = 0) -> np.ndarray:
    """``count`` synthetic samples (random identity, expression, pose up to ±90° yaw, lighting,
    procedural background) with their ``pt2d`` landmarks."""
    from face3d_data.viz import contact_sheet, draw_landmarks
    from face3d_data.w300lp.synth import synthesize

    rng = np.random.default_rng(seed)
    tiles = []
    for _ in range(count):
        s = synthesize(model, rng, image_size=450)
        tiles.append(draw_landmarks(s.image, s.landmarks, radius=2))
    return contact_sheet(tiles, ncols=4, tile_size=size)


def main(argv=None) -> None:
    """``python -m face3d_data.morphable.picture --out docs/images``: the pictures of docs/morphable.md."""
    import argparse
    import os

    from face3d_data.io import write_image
    from face3d_data.morphable.builtin import builtin_model

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    model = builtin_model()
    write_image(os.path.join(args.out, "builtin_modes.png"), mode_sheet(model, 4, 4, 0, size=128))
    write_image(os.path.join(args.out, "builtin_views.png"), views_strip(model, size=128))
    write_image(os.path.join(args.out, "synth_samples.png"), synthetic_sheet(model))


if __name__ == "__main__":
    main()
