"""Synthetic 300W-LP-format samples from a morphable model ("learning from synthetic data").

:func:`synthesize` samples identity, expression and texture from the model's prior and a pose
from a configurable distribution, renders the textured face with spherical-harmonics lighting
over a background (procedural, or a user image) with the project's rasteriser, and returns the
image with labels in exactly the 300W-LP layout (see :mod:`face3d_data.w300lp.labels`).

Labels are computed from the *stored* values: the pose is rounded to float32 (as 300W-LP stores
``Pose_Para``) before anything is projected, so reprojecting the model's landmarks with the saved
``Pose_Para``/``Shape_Para``/``Exp_Para`` reproduces ``pt2d`` exactly (to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from face3d_data.morphable.model import MorphableModel
from face3d_data.render import render_attributes, vertex_normals
from face3d_data.w300lp.labels import labels_to_mat, roi_of_points
from face3d_data.w300lp.pose import angles_to_matrix, project

#: Real spherical-harmonics basis up to band 2, scaled so that coefficient 0 is the ambient level
#: and bands 1-2 are unit-amplitude directional terms. Normals are in the camera frame
#: (x right, y up, z towards the camera).
SH_BANDS = 9


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals -> (N, 9) basis values [1, y, z, x, xy, yz, (3z²-1)/2, xz, (x²-y²)/2]."""
    x, y, z = normals[:, 0], normals[:, 1], normals[:, 2]
    return np.stack([np.ones_like(x), y, z, x, x * y, y * z, 0.5 * (3 * z * z - 1), x * z,
                     0.5 * (x * x - y * y)], 1)


def shade(albedo: np.ndarray, normals: np.ndarray, sh: np.ndarray) -> np.ndarray:
    """Lambertian SH shading: ``albedo · max(0, basis(n) · sh)``.

    Args:
        albedo: (N, 3) 0-255. normals: (N, 3) unit, camera frame. sh: (9, 3) per-channel coefficients.
    Returns:
        (N, 3) float32 0-255 (clipped).
    """
    light = np.clip(sh_basis(normals) @ sh, 0.0, None)
    return np.clip(albedo * light, 0, 255).astype(np.float32)


def random_sh(rng: np.random.Generator, ambient=(0.55, 0.95), directional=(0.25, 0.6)) -> np.ndarray:
    """Random plausible lighting (9, 3): ambient + one dominant direction from the front half-space
    (mostly from above) + weak band-2 terms, with a mild colour tint."""
    amb = rng.uniform(*ambient)
    d = rng.normal(size=3) * [0.8, 0.6, 0.4] + [0.0, 0.4, 1.0]
    d /= np.linalg.norm(d)
    strength = rng.uniform(*directional)
    coef = np.zeros(SH_BANDS)
    coef[0] = amb
    coef[1], coef[2], coef[3] = strength * d[1], strength * d[2], strength * d[0]
    coef[4:] = rng.normal(0, 0.05, 5)
    tint = 1.0 + rng.normal(0, 0.025, 3)
    return (coef[:, None] * tint[None]).astype(np.float32)


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a colour gradient plus multi-scale smooth noise and a few soft shapes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ang = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(ang) * xx + np.sin(ang) * yy)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    for cells, amp in ((3, 40.0), (9, 20.0), (27, 10.0)):
        noise = rng.normal(0, 1, (cells, cells, 3)).astype(np.float32)
        img += amp * cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(rng.integers(0, 5)):
        cx, cy = rng.uniform(0, size, 2)
        r = rng.uniform(0.05, 0.3) * size
        blob = np.exp(-(((xx * size - cx) ** 2 + (yy * size - cy) ** 2) / (2 * r * r)))
        img += blob[..., None] * rng.uniform(-60, 60, 3)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + rng.uniform(0.25, 0.7) * (img - grey)  # muted colours, like indoor/outdoor scenes
    return np.clip(img, 0, 255).astype(np.uint8)


def image_background(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """A random square crop of a user image (H, W, 3) uint8, resized to (size, size, 3), maybe mirrored."""
    h, w = image.shape[:2]
    side = int(rng.uniform(0.5, 1.0) * min(h, w))
    side = max(side, 1)
    y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = image[y0:y0 + side, x0:x0 + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


@dataclass
class PoseDistribution:
    """Where synthetic heads are placed. Angles in degrees; ``yaw`` uniform in ±yaw_range_deg
    (or in ``yaw_interval_deg`` = (low, high) when given, e.g. one view of a multi-view group:
    :func:`face3d_data.w300lp.multiview.view_pose`), pitch and roll normal (clipped at 2.5σ);
    scale f so the face spans ``face_width_px`` (uniform range) in the image; the face centre
    jitters by ``center_jitter`` × image size."""
    yaw_range_deg: float = 90.0
    pitch_std_deg: float = 12.0
    roll_std_deg: float = 8.0
    face_width_px: tuple = (130.0, 200.0)
    center_jitter: float = 0.06
    yaw_interval_deg: tuple | None = None

    def sample(self, rng: np.random.Generator, model_width: float, centre: np.ndarray,
               image_size: int) -> np.ndarray:
        """(7,) float32 Pose_Para placing model point ``centre`` (3,) near the image centre."""
        low, high = ((-self.yaw_range_deg, self.yaw_range_deg) if self.yaw_interval_deg is None
                     else self.yaw_interval_deg)
        yaw = np.deg2rad(rng.uniform(low, high))
        pitch = np.deg2rad(np.clip(rng.normal(0, self.pitch_std_deg), -2.5 * self.pitch_std_deg,
                                   2.5 * self.pitch_std_deg))
        roll = np.deg2rad(np.clip(rng.normal(0, self.roll_std_deg), -2.5 * self.roll_std_deg,
                                  2.5 * self.roll_std_deg))
        f = rng.uniform(*self.face_width_px) / model_width * image_size / 450.0
        R = angles_to_matrix(pitch, yaw, roll)
        c = f * (R @ centre)
        jitter = rng.uniform(-self.center_jitter, self.center_jitter, 2) * image_size
        # Matlab frame (1-based, y up): the image centre is ((S+1)/2, (S+1)/2)
        tx = (image_size + 1) / 2 + jitter[0] - c[0]
        ty = (image_size + 1) / 2 + jitter[1] - c[1]
        return np.array([pitch, yaw, roll, tx, ty, 0.0, f], np.float32)


@dataclass
class SynthSample:
    """One synthetic sample.

    Attributes:
        image: (S, S, 3) uint8 RGB.
        labels: 300W-LP ``.mat`` fields (``Pose_Para`` (1,7) f32, ``Shape_Para`` (Ks,1), ``Exp_Para``
            (Ke,1), ``Tex_Para`` (Kt,1), ``Color_Para`` (1,7), ``Illum_Para`` (1,10), ``pt2d`` (2,68)
            1-based y down, ``pt3d_68`` (3,68) 1-based y down + z, ``roi`` (1,4) int16, ``SH_Para`` (9,3)).
        landmarks: (68, 2) float64 canonical frame: the projected landmark vertices (3D-style).
        pts_2d: (68, 2) canonical: 2D-style landmarks (far-side jaw marched to the silhouette).
        pts_3d: (68, 2) canonical: same as ``landmarks``.
        mask: (S, S) bool, pixels covered by the face mesh.
    """
    image: np.ndarray
    labels: dict
    landmarks: np.ndarray
    pts_2d: np.ndarray
    pts_3d: np.ndarray
    mask: np.ndarray = field(repr=False, default=None)


def marched_landmarks(model: MorphableModel, projected: np.ndarray, pose_para) -> np.ndarray:
    """2D-style landmarks: on the jaw side turned away from the camera, each jaw landmark becomes
    the vertex of its contour line with the outermost projected x (HPEN landmark marching).

    Args:
        projected: (N, 3) canonical projected vertices. pose_para: (7,).
    Returns:
        (68, 2) canonical. Without ``contour_lines`` the 3D-style points are returned.
    """
    pts = projected[model.landmarks, :2].copy()
    if model.contour_lines is None:
        return pts
    p = np.asarray(pose_para, np.float64).ravel()
    R = angles_to_matrix(p[0], p[1], p[2])
    plus_x_towards_camera = R[2, 0] > 0  # model +x axis comes towards the viewer
    # the image-right side of the face is model +x in a frontal view (roll aside)
    far = range(0, 8) if plus_x_towards_camera else range(9, 17)
    sign = -1.0 if plus_x_towards_camera else 1.0  # outermost = min x on the left, max x on the right
    if R[0, 0] < 0:  # upside-down / mirrored roll: image left-right swapped
        sign = -sign
    for i in far:
        line = model.contour_lines[i]
        if line.size:
            xs = projected[line, 0]
            j = line[np.argmax(sign * xs)]
            pts[i] = projected[j, :2]
    return pts


def render_face(model: MorphableModel, vertices: np.ndarray, albedo: np.ndarray, pose_para,
                image_size: int, sh: np.ndarray, background: np.ndarray | None = None,
                projected: np.ndarray | None = None, antialias: int = 2):
    """Render a textured, SH-lit face over a background.

    Args:
        vertices: (N, 3) model space; albedo: (N, 3) 0-255; pose_para: (7,) 300W-LP pose.
        sh: (9, 3) lighting in the camera frame; background: (S, S, 3) uint8 or None (black).
        projected: the canonical projection of ``vertices`` if already computed.
        antialias: supersampling factor k (the face is rasterised at k·S with pixel centres
            mapped exactly, box-filtered down, and blended with the background by coverage).
    Returns:
        (image (S, S, 3) uint8, mask (S, S) bool: pixels at least half covered by the face).
    """
    if model.triangles is None:
        raise ValueError("model: has no triangles, cannot render")
    k = int(antialias)
    if k < 1:
        raise ValueError(f"antialias: expected an integer >= 1, got {antialias}")
    if projected is None:
        projected = project(vertices, pose_para, (image_size, image_size))
    p = np.asarray(pose_para, np.float64).ravel()
    R = angles_to_matrix(p[0], p[1], p[2])
    normals = vertex_normals(vertices, model.triangles) @ R.T.astype(np.float32)
    colour = shade(albedo, normals, sh)
    attrs = np.concatenate([colour, np.ones((len(colour), 1), np.float32)], 1)
    fine = np.array(projected, dtype=np.float32)
    # pixel centre x of the fine grid covers [x - 1/2, x + 1/2] of the output: x_fine = (x + 1/2)·k - 1/2
    fine[:, :2] = (fine[:, :2] + 0.5) * k - 0.5
    out = render_attributes(fine, model.triangles, attrs, image_size * k, image_size * k)
    if k > 1:
        out = cv2.resize(out, (image_size, image_size), interpolation=cv2.INTER_AREA)
    coverage = np.clip(out[..., 3:4], 0.0, 1.0)
    bg = (np.zeros((image_size, image_size, 3), np.float32) if background is None
          else background.astype(np.float32))
    img = np.clip(out[..., :3], 0, 255) + (1.0 - coverage) * bg  # colours are premultiplied (bg 0)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), coverage[..., 0] >= 0.5


def sample_coefficients(model: MorphableModel, rng: np.random.Generator, scale: float = 1.0,
                        part: str = "shape") -> np.ndarray:
    """Draw coefficients of ``part`` from the prior N(0, (scale·std)²), clipped at ±3σ; float64."""
    std = {"shape": model.shape_std, "exp": model.exp_std, "tex": model.tex_std}[part]
    if std is None:
        return np.zeros(0)
    return np.clip(rng.normal(0, 1, len(std)), -3, 3) * std.astype(np.float64) * scale


def synthesize(model: MorphableModel, rng: np.random.Generator, image_size: int = 450,
               yaw_range_deg: float = 90.0, *, pose: PoseDistribution | None = None,
               shape_para=None, tex_para=None, exp_para=None, exp_scale: float = 1.0, shape_scale: float = 1.0,
               background: np.ndarray | None = None, antialias: int = 2) -> SynthSample:
    """Render one synthetic sample with 300W-LP labels.

    Args:
        model: any textured model with triangles (the builtin one by default in the stage).
        rng: the random generator (all randomness comes from it).
        image_size: S, the square image size (300W-LP: 450).
        yaw_range_deg: yaw uniform in ±this (ignored when ``pose`` is given).
        pose: a full :class:`PoseDistribution`.
        shape_para / tex_para / exp_para: fix the identity / texture / expression (e.g. several
            views of one identity); sampled from the prior (in that order) when None.
        exp_scale, shape_scale: multiply the prior stds when sampling.
        background: (H, W, 3) uint8 user image to crop from, or None for a procedural one.
        antialias: supersampling factor of the render (1 = none).
    Returns:
        :class:`SynthSample`.
    """
    if model.tex_mean is None:
        raise ValueError("model: has no texture (tex_mean), cannot synthesize images")
    if image_size < 16:
        raise ValueError(f"image_size: must be >= 16, got {image_size}")
    pose = pose or PoseDistribution(yaw_range_deg=yaw_range_deg)
    def given_or_drawn(given, scale, part):
        if given is None:
            return sample_coefficients(model, rng, scale, part)
        return np.asarray(given, np.float64).ravel()

    sp = given_or_drawn(shape_para, shape_scale, "shape")  # drawn in this order: shape, expression, texture
    ep = given_or_drawn(exp_para, exp_scale, "exp")
    tp = given_or_drawn(tex_para, 1.0, "tex")
    # store float32 (300W-LP's re-fitted files do) and compute every label from the stored values
    sp, ep, tp = sp.astype(np.float32), ep.astype(np.float32), tp.astype(np.float32)
    vertices = model.vertices(sp, ep)
    lm3 = vertices[model.landmarks].astype(np.float64)
    width = float(np.ptp(lm3[:17, 0])) or float(np.ptp(vertices[:, 0]))
    pose_para = pose.sample(rng, width, lm3.mean(axis=0), image_size)
    projected = project(vertices, pose_para, (image_size, image_size))
    sh = random_sh(rng)
    bg = (procedural_background(rng, image_size) if background is None
          else image_background(background, rng, image_size))
    albedo = model.colors(tp)
    image, mask = render_face(model, vertices, albedo, pose_para, image_size, sh, bg, projected,
                              antialias)

    landmarks = projected[model.landmarks, :2].copy()
    pts_2d = marched_landmarks(model, projected, pose_para)
    labels = labels_to_mat(pose_para, sp, ep, tex_para=tp, pt2d=landmarks,
                           pt3d_68=projected[model.landmarks], roi=roi_of_points(landmarks),
                           extra={"SH_Para": sh.astype(np.float32)})
    return SynthSample(image=image, labels=labels, landmarks=landmarks, pts_2d=pts_2d,
                       pts_3d=landmarks.copy(), mask=mask)


def identity_rng(seed: int, identity: int) -> np.random.Generator:
    """The generator of one synthetic identity (its shape and texture): derived from the run's
    ``seed`` and the identity number only, so every view of it, on any worker, gets the same face."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(identity), 0x5EED]))


def identity_split(identity: int, seed: int, fractions) -> str:
    """Deterministic ``"train"`` / ``"val"`` / ``"test"`` of one identity for ``fractions``
    (train, val, test) summing to 1: all views of an identity land in the same split."""
    u = identity_rng(seed, identity).random()
    train, val = float(fractions[0]), float(fractions[1])
    return "train" if u < train else ("val" if u < train + val else "test")
