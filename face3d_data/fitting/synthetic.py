"""Synthetic landmark fitting problems with known answers (for tests and benchmarks).

Faces are drawn from a model's prior, posed with a random 300W-LP ``Pose_Para`` and projected to
the canonical frame of an ``image_hw`` image. With ``silhouette=True`` the jaw landmarks on the
side turned away from the camera are moved to the *visible silhouette*, the way a person
annotates a profile: for each such landmark, the mesh vertex with the extreme projected x among
all face vertices in a thin horizontal band (model space, ±10% of the jaw landmark spacing) around the
landmark vertex and not behind it. This uses the whole mesh, not the model's contour lines, so it is independent of the
landmark marching being tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from face3d_data.w300lp.pose import angles_to_matrix, project


@dataclass
class SyntheticFaces:
    """A batch of synthetic fitting problems.

    Attributes:
        landmarks: (B, 68, 2) float64 canonical frame, as given to the fitter (noise included).
        clean: (B, 68, 2) the same without noise.
        pose_para: (B, 7) float64 true 300W-LP poses (tz = 0).
        shape_para: (B, Ks); exp_para: (B, Ke) true coefficients (model units).
        image_hw: (height, width).
    """

    landmarks: np.ndarray
    clean: np.ndarray
    pose_para: np.ndarray
    shape_para: np.ndarray
    exp_para: np.ndarray
    image_hw: tuple


def _silhouette_jaw(model, vertices: np.ndarray, pose_para: np.ndarray, image_hw) -> np.ndarray:
    """(68, 3) projected landmarks with the away-side jaw on the silhouette (one face)."""
    proj = project(vertices, pose_para, image_hw)
    lm = model.landmarks
    out = proj[lm].copy()
    rot = angles_to_matrix(*pose_para[:3])
    mean = model.mean
    jaw_y = mean[lm[:17], 1]
    band = 0.1 * np.median(np.abs(np.diff(jaw_y)))
    on_mesh = np.zeros(model.n_vertices, bool)
    on_mesh[model.triangles.ravel()] = True
    if model.regions is not None:
        on_mesh &= model.regions > 0       # the face, not the neck or the back of the head
    chin_x = mean[lm[8], 0]
    turn = np.sign(rot[2, 0])          # +1: the model's +x side faces the camera
    for i in range(17):
        side = np.sign(mean[lm[i], 0] - chin_x)
        if i == 8 or side != -turn:
            continue
        v = lm[i]
        near = on_mesh & (np.abs(mean[:, 1] - mean[v, 1]) <= band) & (mean[:, 2] >= mean[v, 2])
        idx = np.nonzero(near)[0]
        best = idx[np.argmin(proj[idx, 0])] if side < 0 else idx[np.argmax(proj[idx, 0])]
        out[i] = proj[best]
    return out


def synthetic_faces(model, n_faces: int, seed: int = 0, *, image_hw=(450, 450),
                    yaw_deg=(-45.0, 45.0), pitch_deg=(-15.0, 15.0), roll_deg=(-15.0, 15.0),
                    noise_px: float = 0.0, silhouette: bool = False,
                    coefficient_scale: float = 1.0) -> SyntheticFaces:
    """Draw ``n_faces`` faces and their 68 landmarks.

    Args:
        model: a MorphableModel (``silhouette=True`` needs its mesh).
        n_faces: batch size B.
        seed: random seed (same seed, same faces).
        image_hw: image size; the face spans ~45% of the width, centred with a small jitter.
        yaw_deg, pitch_deg, roll_deg: uniform ranges (degrees). A range like (60, 90) with
            ``n_faces`` > 1 gives both signs when ``symmetric`` profiles are wanted: pass the
            negative range separately.
        noise_px: std of i.i.d. Gaussian noise added to each coordinate (px).
        silhouette: put the away-side jaw landmarks on the visible silhouette.
        coefficient_scale: multiplies the prior std the coefficients are drawn with.
    """
    rng = np.random.default_rng(seed)
    h, w = image_hw
    shape = rng.standard_normal((n_faces, model.n_shape)) * model.shape_std * coefficient_scale
    exp = rng.standard_normal((n_faces, model.n_exp)) * model.exp_std * coefficient_scale
    angles = np.deg2rad(np.column_stack([rng.uniform(*pitch_deg, n_faces), rng.uniform(*yaw_deg, n_faces),
                                         rng.uniform(*roll_deg, n_faces)]))
    lm_mean = model.mean[model.landmarks]
    width = np.ptp(lm_mean[:, 0])
    f = 0.45 * w / width * rng.uniform(0.9, 1.1, n_faces)
    centre = np.column_stack([w / 2 + rng.uniform(-10, 10, n_faces), h / 2 + rng.uniform(-10, 10, n_faces)])
    pose = np.zeros((n_faces, 7))
    pose[:, :3], pose[:, 6] = angles, f
    verts = model.vertices(shape, exp).astype(np.float64)                       # (B, N, 3)
    clean = np.empty((n_faces, 68, 2))
    for b in range(n_faces):
        # Translate so that the landmark centroid lands on `centre` (Matlab frame: +1, y up).
        rot = angles_to_matrix(*angles[b])
        c = f[b] * (rot @ verts[b, model.landmarks].mean(axis=0))
        pose[b, 3] = centre[b, 0] + 1.0 - c[0]
        pose[b, 4] = h - centre[b, 1] - c[1]
        if silhouette:
            clean[b] = _silhouette_jaw(model, verts[b], pose[b], image_hw)[:, :2]
        else:
            clean[b] = project(verts[b, model.landmarks], pose[b], image_hw)[:, :2]
    noisy = clean + rng.normal(0.0, noise_px, clean.shape) if noise_px > 0 else clean.copy()
    return SyntheticFaces(noisy, clean, pose, shape, exp, (h, w))
