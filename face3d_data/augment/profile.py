"""Out-of-plane "face profiling" of photos with a fitted 3DMM (Zhu et al., CVPR 2016; 300W-LP).

Given an image, its 300W-LP labels (``Pose_Para``, ``Shape_Para``, ``Exp_Para``) and the model the
labels belong to, :class:`Profiler` re-renders the photo as if the head had turned to new
(pitch, yaw, roll) angles and recomputes every label for that view. See docs/profiling.md.

Frames: images and every 2D array here are in the canonical frame (0-based, x right, y down,
pixel centres at integers); projected depth z is larger = closer. ``Pose_Para`` is the 300W-LP
vector ``[pitch, yaw, roll (rad), tx, ty, tz, f]`` (:mod:`face3d_data.w300lp.pose`).

Steps of one view:

1. **Meshing** (once per source, :mod:`face3d_data.augment.profile_mesh`): visible face vertices,
   the face silhouette, anchor rings and an enlarged border, Delaunay-triangulated in 2D, with
   anchor depths from the fitted mesh or a smooth least-squares fill.
2. **Rotation about the face centre**: with ``R0``, ``R1`` the source and target 300W-LP rotation
   matrices, ``R_d = R1·R0ᵀ`` turns camera-space points about ``C = f·R0·c + t`` (``c`` the
   model-space centroid of the face region), so the projected centroid stays where it was and
   ``t' = t + f·(R0 − R1)·c`` (all three components). Face and contour points turn rigidly; the
   border stays put; each anchor's 2D position is the least-squares solution that keeps its
   mesh-edge offsets close to a blend of the turned offsets (weight 1 at the face, falling to 0
   at the border) and the source offsets, so the background bends smoothly instead of tearing.
3. **Rendering**: the turned mesh is z-buffered (:func:`face3d_data.render.rasterize`) into a
   correspondence map (each target pixel's source position, from the barycentrics), and the
   photo is resampled once with ``cv2.remap`` (bilinear).
4. **No-source pixels** (not covered, or whose source lies outside the image) are flagged in the
   view's mask and filled by ``fill``: ``"nearest"`` (default) gives them the source position of
   the nearest pixel that has one (so they continue the texture around them), or a constant
   colour. A pixel is *stretched* when its triangle's area grew by more than ``stretch_factor``.
5. **Labels**: ``Pose_Para`` with the target angles and ``t'``, ``Shape_Para``/``Exp_Para``
   unchanged, ``pt2d``/``pt3d_68``/``roi``/``pts`` recomputed (:mod:`face3d_data.augment.profile_labels`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy import ndimage

from face3d_data.augment.profile_labels import LandmarkRule, MirrorMap, ViewLandmarks
from face3d_data.augment.profile_mesh import (
    ANCHOR,
    BORDER,
    CONTOUR,
    EdgeLeastSquares,
    ImageMesh,
    MeshError,
    MeshOptions,
    build_image_mesh,
    face_vertex_mask,
)
from face3d_data.render import depth_test_visibility, interpolate, rasterize
from face3d_data.w300lp.pose import angles_to_matrix, check_pose_para, project

#: Mask codes of a profiled view.
MASK_FILLED, MASK_STRETCHED, MASK_OK = 0, 128, 255

MIN_IMAGE_SIDE = 32


# ---------------------------------------------------------------------------------------- poses
def sweep_yaws(source_yaw_deg: float, step_deg: float = 5.0, max_yaw_deg: float = 90.0,
               yaws_deg=None, include_inward: bool = False) -> list[float]:
    """Target yaws (degrees) of the profiled views of one source.

    With ``yaws_deg`` None: ``|yaw0| + k·step`` for k = 1, 2, ... while ≤ ``max_yaw_deg``, with
    the sign of the source yaw (300W-LP's sweep; a yaw of exactly 0 counts as positive). With an
    explicit list: its values are target yaw *magnitudes* that take the source's sign; those
    not beyond the source (turning towards frontal, which cannot hallucinate hidden texture)
    are skipped unless ``include_inward``.
    """
    y0 = float(source_yaw_deg)
    sign = -1.0 if y0 < 0 else 1.0
    if yaws_deg is None:
        if not step_deg > 0:
            raise ValueError(f"step_deg: expected > 0, got {step_deg}")
        n = math.floor((float(max_yaw_deg) - abs(y0)) / float(step_deg) + 1e-9)
        return [sign * (abs(y0) + k * float(step_deg)) for k in range(1, n + 1)]
    out = []
    for y in yaws_deg:
        m = abs(float(y))
        if m > 90 + 1e-9:
            raise ValueError(f"yaws: |yaw| must be at most 90, got {y}")
        if include_inward or m > abs(y0) + 1e-9:
            out.append(sign * m)
    return out


@dataclass(frozen=True)
class Jitter:
    """Pitch/roll jitter of the profiled views (degrees).

    Each view adds ``N(0, pitch_std²)`` to the source pitch and ``N(0, roll_std²)`` to the
    source roll, each clipped at ±2.5 σ (``distribution="normal"``), or ``U(-pitch_std, pitch_std)``
    and ``U(-roll_std, roll_std)`` (``"uniform"``); the result is clipped to ±``limit``.
    """

    pitch_std: float = 0.0
    roll_std: float = 0.0
    distribution: str = "normal"
    limit: float = 60.0

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        """(d_pitch, d_roll) in degrees; always consumes two draws, so views stay in step."""
        if self.distribution == "normal":
            u = rng.normal(size=2)
            u = np.clip(u, -2.5, 2.5)
        elif self.distribution == "uniform":
            u = rng.uniform(-1.0, 1.0, size=2)
        else:
            raise ValueError(f"distribution: expected 'normal' or 'uniform', got {self.distribution!r}")
        return float(u[0] * self.pitch_std), float(u[1] * self.roll_std)


def target_angles(source_pose, yaws_deg, jitter: Jitter | None = None,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """(K, 3) radians (pitch, yaw, roll) of the views: the target yaws, the source pitch and roll
    plus the jitter (angles are summed, as 300W-LP does, not composed)."""
    p = check_pose_para(source_pose)
    out = []
    for y in yaws_deg:
        dp, dr = (0.0, 0.0) if jitter is None else jitter.draw(rng)
        lim = math.radians(jitter.limit) if jitter is not None else math.inf
        pitch = float(np.clip(p[0] + math.radians(dp), -lim, lim)) if dp else float(p[0])
        roll = float(np.clip(p[2] + math.radians(dr), -lim, lim)) if dr else float(p[2])
        out.append((pitch, math.radians(float(y)), roll))
    return np.array(out, np.float64).reshape(-1, 3)


def turned_pose(source_pose, angles, centre_model: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The target ``Pose_Para`` (7,) float64 and ``R_d`` (3, 3) for new ``angles`` (radians).

    ``R_d = R1·R0ᵀ`` turns the head about its centre ``centre_model`` (3,), model space; ``t`` is
    chosen so that the centre keeps its camera-space position (see the module docstring).
    """
    p = check_pose_para(source_pose)
    r0 = angles_to_matrix(*p[:3])
    r1 = angles_to_matrix(*angles)
    t = p[3:6] + p[6] * ((r0 - r1) @ np.asarray(centre_model, np.float64))
    return np.concatenate([np.asarray(angles, np.float64), t, p[6:7]]), r1 @ r0.T


# ---------------------------------------------------------------------------------------- views
@dataclass
class ViewQuality:
    """Quality record of one view (fractions in [0, 1]).

    Attributes:
        visible_fraction: of the face pixels of the new view (the model's face region rendered
            at the new pose), the fraction whose surface was visible in the source.
        stretched_fraction: of the profiled image's face pixels, the fraction whose triangle
            grew by more than ``stretch_factor`` in area.
        filled_fraction: of all pixels, the fraction with no source (filled).
        landmark_visibility: fraction of the 68 landmark vertices visible in the new view.
        face_pixels: face pixels of the profiled image.
    """

    visible_fraction: float
    stretched_fraction: float
    filled_fraction: float
    landmark_visibility: float
    face_pixels: int

    def as_dict(self, prefix: str = "") -> dict:
        return {prefix + k: (round(v, 6) if isinstance(v, float) else v)
                for k, v in self.__dict__.items()}


@dataclass
class ProfiledView:
    """One profiled view.

    Attributes:
        image: (H, W, 3) uint8 the re-rendered photo.
        mask: (H, W) uint8 per pixel: 255 sampled from the source, 128 sampled but stretched,
            0 no source (filled by the fill rule).
        source_xy: (H, W, 2) float32 the correspondence map (source x, y of every target pixel,
            after filling).
        pose_para: (7,) float64 the view's ``Pose_Para``.
        angles_deg: (pitch, yaw, roll) of the view in degrees.
        landmarks: :class:`ViewLandmarks` of the view.
        quality: :class:`ViewQuality`.
        seconds: time spent per step (``rasterise``, ``remap``, ``labels``).
        shape_para / exp_para: the view's coefficients (None = the source's).
    """

    image: np.ndarray
    mask: np.ndarray
    source_xy: np.ndarray
    pose_para: np.ndarray
    angles_deg: tuple
    landmarks: ViewLandmarks
    quality: ViewQuality
    seconds: dict = field(default_factory=dict)
    shape_para: np.ndarray | None = None
    exp_para: np.ndarray | None = None


@dataclass(frozen=True)
class RenderLayers:
    """What every view of one source rasterises (see :meth:`ImageMesh.render_layers`).

    Attributes:
        primary / fallback: (P, 3) / (F, 3) int32 triangles; triangles: both, primary first.
        area_src: (P + F,) float64 source-image areas; on_face: (P + F,) bool face triangles.
    """

    primary: np.ndarray
    fallback: np.ndarray
    triangles: np.ndarray
    area_src: np.ndarray
    on_face: np.ndarray


@dataclass
class SourceFace:
    """A source photo prepared for profiling (the mesh is built once and reused for every view).

    Attributes:
        image: (H, W, 3) uint8; pose_para: (7,) float64; shape_para / exp_para: float64.
        vertices: (N, 3) model space; projected: (N, 3) canonical source projection.
        mesh: the :class:`~face3d_data.augment.profile_mesh.ImageMesh`.
        centre_model: (3,) model-space centroid of the face region (the pivot).
        seconds: time of the meshing step.
        anchor_solver: the factorised anchor-position solve, shared by the views (built lazily).
    """

    image: np.ndarray
    pose_para: np.ndarray
    shape_para: np.ndarray
    exp_para: np.ndarray
    vertices: np.ndarray
    projected: np.ndarray
    mesh: ImageMesh
    centre_model: np.ndarray
    seconds: float = 0.0
    anchor_solver: object = field(default=None, repr=False)
    _layers: object = field(default=None, repr=False)

    def layers(self) -> RenderLayers:
        """The per-source triangle layers and source areas (built once)."""
        if self._layers is None:
            primary, fallback = self.mesh.render_layers()
            tri = np.concatenate([primary, fallback])
            self._layers = RenderLayers(primary=primary, fallback=fallback, triangles=tri,
                                        area_src=_areas(self.mesh.points[:, :2], tri),
                                        on_face=np.all(self.mesh.kind[tri] <= CONTOUR, axis=1))
        return self._layers


class ProfileError(ValueError):
    """A source that cannot be profiled (face off the image, degenerate fit, tiny image)."""


@dataclass(frozen=True)
class ProfileOptions:
    """Options of :class:`Profiler`.

    Attributes:
        mesh: :class:`MeshOptions`.
        fill: ``"nearest"`` or an RGB triple / grey level (0-255) for pixels with no source.
        stretch_factor: a pixel is stretched when its triangle's area grew by more than this.
        min_face_pixels: a source whose face covers fewer pixels is rejected.
        max_face_extent: a fit whose projected face spans more than this many image sizes is
            rejected as degenerate.
    """

    mesh: MeshOptions = field(default_factory=MeshOptions)
    fill: object = "nearest"
    stretch_factor: float = 3.0
    min_face_pixels: int = 200
    max_face_extent: float = 4.0

    def __post_init__(self):
        if isinstance(self.fill, str):
            if self.fill != "nearest":
                raise ValueError(f"fill: expected 'nearest' or a colour, got {self.fill!r}")
        else:
            rgb = np.broadcast_to(np.asarray(self.fill, np.float64), (3,))
            if not np.all((rgb >= 0) & (rgb <= 255)):
                raise ValueError(f"fill: colour values must be in 0..255, got {self.fill!r}")
        if not self.stretch_factor > 1:
            raise ValueError("stretch_factor: expected > 1")


def parse_fill(text) -> object:
    """The text form of :attr:`ProfileOptions.fill`: ``"nearest"``, a grey level ``"0"``..``"255"``
    or ``"R,G,B"`` -> ``"nearest"`` or an (r, g, b) tuple of floats. Raises ValueError."""
    value = str(text).strip().lower()
    if value == "nearest":
        return value
    try:
        parts = [float(p) for p in value.split(",")]
    except ValueError:
        raise ValueError(f"fill: expected 'nearest', a grey level or 'R,G,B', got {text!r}") from None
    if len(parts) not in (1, 3) or not all(0 <= p <= 255 for p in parts):
        raise ValueError(f"fill: expected one or three values in 0..255, got {text!r}")
    return tuple(parts * 3) if len(parts) == 1 else tuple(parts)


class Profiler:
    """Face profiling with one model (build once, e.g. in a stage's ``setup``).

    Args:
        model: the :class:`~face3d_data.morphable.MorphableModel` the labels belong to (needs
            triangles).
        options: :class:`ProfileOptions`.
        mirror: build the left/right :class:`MirrorMap` (needed by :meth:`flip`).
    """

    def __init__(self, model, options: ProfileOptions = ProfileOptions(), mirror: bool = False):
        if model.triangles is None:
            raise ValueError(f"model {model.name!r}: profiling needs a mesh (triangles)")
        self.model = model
        self.options = options
        self.face = face_vertex_mask(model)
        self.landmarks = LandmarkRule(model)
        self.mirror = MirrorMap(model) if mirror else None
        tri = model.triangles
        self._face_tri_mask = np.all(self.face[tri], axis=1)
        self._landmark_visibility = SubsetVisibility(tri, model.landmarks)

    # ------------------------------------------------------------------------------ source
    def prepare(self, image: np.ndarray, pose_para, shape_para, exp_para) -> SourceFace:
        """Check a source and mesh its image.

        Raises:
            ProfileError: image too small, coefficients that do not fit the model, a degenerate
                fit, or a face (mostly) outside the image.
        """
        t0 = time.perf_counter()
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ProfileError(f"image: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        if min(h, w) < MIN_IMAGE_SIDE:
            raise ProfileError(f"image is {w}x{h}; profiling needs at least {MIN_IMAGE_SIDE} px a side")
        try:
            pose = check_pose_para(pose_para, "Pose_Para")
        except ValueError as exc:
            raise ProfileError(str(exc)) from None
        model = self.model
        sp_ = np.ravel(shape_para).astype(np.float64)
        ep_ = np.ravel(exp_para).astype(np.float64)
        if sp_.size > model.n_shape or ep_.size > model.n_exp:
            raise ProfileError(f"labels have {sp_.size} shape / {ep_.size} expression coefficients; "
                               f"model {model.name!r} has {model.n_shape} / {model.n_exp}")
        if not (np.all(np.isfinite(sp_)) and np.all(np.isfinite(ep_))):
            raise ProfileError("Shape_Para / Exp_Para contain NaN or infinite values")
        vertices = model.vertices(sp_, ep_).astype(np.float64)
        projected = project(vertices, pose, (h, w))
        face_xy = projected[self.face, :2]
        if not np.all(np.isfinite(projected)):
            raise ProfileError("degenerate fit: the projected face is not finite")
        extent = np.ptp(face_xy, axis=0)
        if extent.max() > self.options.max_face_extent * max(h, w) or extent.min() < 4.0:
            raise ProfileError(f"degenerate fit: the projected face spans {extent[0]:.1f} x "
                               f"{extent[1]:.1f} px in a {w}x{h} image")
        centre_model = vertices[self.face].mean(axis=0)
        centre = project(centre_model[None], pose, (h, w))[0]
        try:
            mesh = build_image_mesh(projected, model.triangles, self.face, (h, w),
                                    self.options.mesh, centre=centre)
        except MeshError as exc:
            raise ProfileError(f"face outside the image: {exc}") from None
        if int(mesh.face_mask.sum()) < self.options.min_face_pixels:
            raise ProfileError(f"face outside the image or too small: it covers "
                               f"{int(mesh.face_mask.sum())} pixels (at least "
                               f"{self.options.min_face_pixels} needed)")
        return SourceFace(image=image, pose_para=pose, shape_para=sp_, exp_para=ep_,
                          vertices=vertices, projected=projected, mesh=mesh,
                          centre_model=centre_model, seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------------------ views
    def turn_points(self, source: SourceFace, rotation: np.ndarray) -> np.ndarray:
        """(M, 3) target positions of the image-mesh points for camera rotation ``rotation``."""
        mesh = source.mesh
        d = np.diag([1.0, -1.0, 1.0])
        rc = d @ rotation @ d                     # the same turn in the canonical (y-down) frame
        pts = mesh.points
        turned = (pts - mesh.centre) @ rc.T + mesh.centre
        target = pts.copy()
        rigid = mesh.kind <= CONTOUR
        target[rigid] = turned[rigid]
        anchors = mesh.kind == ANCHOR
        if anchors.any():
            i, j = mesh.edges[:, 0], mesh.edges[:, 1]
            beta = 0.5 * (mesh.weight[i] + mesh.weight[j])[:, None]
            offsets = beta * (turned[i, :2] - turned[j, :2]) + (1 - beta) * (pts[i, :2] - pts[j, :2])
            if source.anchor_solver is None:
                source.anchor_solver = EdgeLeastSquares(mesh.edges, ~anchors)
            target[:, :2] = source.anchor_solver.solve(target[:, :2], offsets)
            wa = mesh.weight[anchors]
            target[anchors, 2] = wa * turned[anchors, 2] + (1 - wa) * pts[anchors, 2]
        return target

    def view(self, source: SourceFace, angles) -> ProfiledView:
        """Render ``source`` at new (pitch, yaw, roll) ``angles`` (radians) with its labels."""
        seconds = {}
        t0 = time.perf_counter()
        h, w = source.image.shape[:2]
        pose, rotation = turned_pose(source.pose_para, angles, source.centre_model)
        pose = pose.astype(np.float32).astype(np.float64)     # what the .mat will hold
        mesh = source.mesh
        target = self.turn_points(source, rotation)
        layers = source.layers()
        raster = rasterize(target, layers.primary, h, w)
        if len(layers.fallback) and not raster.mask.all():
            back = rasterize(target, layers.fallback, h, w)
            use = ~raster.mask & back.mask
            raster.triangle_id[use] = back.triangle_id[use] + len(layers.primary)
            raster.barycentric[use] = back.barycentric[use]
            raster.depth[use] = back.depth[use]
        src_xy = interpolate(mesh.points[:, :2], raster, layers.triangles)
        ids = raster.triangle_id
        covered = ids >= 0
        valid = covered & (src_xy[..., 0] >= -0.5) & (src_xy[..., 0] <= w - 0.5) \
            & (src_xy[..., 1] >= -0.5) & (src_xy[..., 1] <= h - 0.5)
        if not valid.any():
            raise ProfileError("no pixel of the view has a source pixel")
        area_tgt = _areas(target[:, :2], layers.triangles)
        with np.errstate(divide="ignore", invalid="ignore"):
            grown = ~(area_tgt <= self.options.stretch_factor * layers.area_src)
        safe = np.maximum(ids, 0)
        face_px = covered & layers.on_face[safe]
        stretched = covered & grown[safe]
        seconds["rasterise"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        filled = ~valid
        maps = src_xy
        if filled.any() and self.options.fill == "nearest":
            maps = _fill_nearest(src_xy, filled)
        maps = np.ascontiguousarray(maps, np.float32)
        image = cv2.remap(source.image, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        if filled.any() and self.options.fill != "nearest":
            image[filled] = np.broadcast_to(np.asarray(self.options.fill, np.float64), (3,)
                                            ).round().astype(np.uint8)
        mask = np.full((h, w), MASK_OK, np.uint8)
        mask[stretched] = MASK_STRETCHED
        mask[filled] = MASK_FILLED
        seconds["remap"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        landmarks = self.landmarks(source.vertices, pose, (h, w))
        quality = self._quality(source, pose, face_px, stretched, filled)
        seconds["labels"] = time.perf_counter() - t0
        return ProfiledView(image=image, mask=mask, source_xy=maps, pose_para=pose,
                            angles_deg=tuple(math.degrees(a) for a in pose[:3]),
                            landmarks=landmarks, quality=quality, seconds=seconds)

    def _quality(self, source: SourceFace, pose, face_px, stretched, filled) -> ViewQuality:
        h, w = source.image.shape[:2]
        model = self.model
        proj = project(source.vertices, pose, (h, w))
        raster = rasterize(proj, model.triangles, h, w)
        seen = source.mesh.visible.astype(np.float32)
        vis_map = interpolate(seen, raster, model.triangles)
        ids = raster.triangle_id
        face_new = (ids >= 0) & self._face_tri_mask[np.maximum(ids, 0)]
        n_face = int(face_new.sum())
        visible_fraction = float((vis_map[face_new] >= 0.5).mean()) if n_face else 0.0
        lm_vis = self._landmark_visibility(proj, raster, h, w)
        n_px = int(face_px.sum())
        return ViewQuality(visible_fraction=visible_fraction,
                           stretched_fraction=float((stretched & face_px).sum() / n_px) if n_px else 1.0,
                           filled_fraction=float(filled.mean()),
                           landmark_visibility=float(lm_vis.mean()),
                           face_pixels=n_px)

    def identity(self, source: SourceFace) -> ProfiledView:
        """The zero rotation (the source re-rendered at its own pose)."""
        return self.view(source, source.pose_para[:3])

    # ------------------------------------------------------------------------------ mirroring
    def flip(self, view: ProfiledView, source: SourceFace) -> ProfiledView:
        """The left-right mirror of a view: image, mask and map flipped, mirrored coefficients,
        pose and landmarks (see :mod:`face3d_data.augment.profile_labels`)."""
        if self.mirror is None:
            raise ValueError("Profiler was built without mirror=True")
        h, w = view.image.shape[:2]
        shape_m, exp_m = self.mirror.coefficients(source.shape_para, source.exp_para)
        pose_m = self.mirror.pose(view.pose_para, w).astype(np.float32).astype(np.float64)
        vertices_m = self.model.vertices(shape_m, exp_m).astype(np.float64)
        landmarks = self.landmarks(vertices_m, pose_m, (h, w))
        src = view.source_xy[:, ::-1].copy()
        src[..., 0] = (w - 1) - src[..., 0]
        return ProfiledView(image=np.ascontiguousarray(view.image[:, ::-1]),
                            mask=np.ascontiguousarray(view.mask[:, ::-1]), source_xy=src,
                            pose_para=pose_m, angles_deg=tuple(math.degrees(a) for a in pose_m[:3]),
                            landmarks=landmarks, quality=view.quality, seconds={},
                            shape_para=shape_m, exp_para=exp_m)


class SubsetVisibility:
    """:func:`face3d_data.render.vertex_visibility` for a few vertices of a mesh (same rule, same
    result), without computing every vertex's normal: only the triangles around ``vertices``.

    Args:
        triangles: (M, 3) the mesh; vertices: (K,) the vertices to test (e.g. the 68 landmarks).
    """

    def __init__(self, triangles: np.ndarray, vertices: np.ndarray):
        tri = np.asarray(triangles, np.int64)
        self.vertices = np.asarray(vertices, np.int64)
        slot = np.full(int(max(tri.max(), self.vertices.max())) + 1, -1, np.int64)
        slot[self.vertices] = np.arange(len(self.vertices))
        self._n_tri = len(tri)
        self._incident = np.nonzero((slot[tri] >= 0).any(axis=1))[0]   # original order kept
        self._tri = tri[self._incident]
        self._slots = slot[self._tri]                                    # (m, 3), -1 elsewhere

    def __call__(self, projected: np.ndarray, raster, height: int, width: int,
                 tolerance: float = 1.0) -> np.ndarray:
        """(K,) bool visibility of the vertices; ``raster`` is the mesh's :func:`rasterize`."""
        v = np.asarray(projected, np.float32)
        flip = np.array([1, -1, 1], np.float32)
        vf = (v * flip).astype(np.float64)
        t = self._tri
        face = np.cross(vf[t[:, 1]] - vf[t[:, 0]], vf[t[:, 2]] - vf[t[:, 0]])
        face[~np.all(np.isfinite(face), axis=1)] = 0
        k_n = len(self.vertices)
        normals = np.zeros((k_n + 1, 3))
        for k in range(3):
            np.add.at(normals, np.where(self._slots[:, k] >= 0, self._slots[:, k], k_n), face)
        normals = normals[:k_n]
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        n = ((normals / np.where(length > 0, length, 1)).astype(np.float32) * flip).astype(np.float64)
        won = np.zeros(self._n_tri, bool)
        won[raster.triangle_id[raster.mask]] = True
        drawn = np.zeros(k_n, bool)
        hit = won[self._incident]
        for k in range(3):
            sel = hit & (self._slots[:, k] >= 0)
            drawn[self._slots[sel, k]] = True
        return depth_test_visibility(v[self.vertices], n, drawn, raster, height, width, tolerance)


def _fill_nearest(values: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """A copy of ``values`` (H, W, C) where each ``filled`` pixel takes the value of its nearest
    (Euclidean) pixel that is not filled.

    The nearest unfilled pixel always lies in the filled pixels' bounding box grown by one pixel
    (a pixel further out has an unfilled neighbour that is closer), so the distance transform
    runs on that box only.
    """
    ys, xs = np.nonzero(filled)
    h, w = filled.shape
    y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, h)
    x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, w)
    sub = filled[y0:y1, x0:x1]
    _, (iy, ix) = ndimage.distance_transform_edt(sub, return_indices=True)
    out = np.array(values, copy=True)
    box = values[y0:y1, x0:x1]
    out[y0:y1, x0:x1][sub] = box[iy[sub], ix[sub]]
    return out


def _areas(xy: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a = xy[tri[:, 1]] - xy[tri[:, 0]]
    b = xy[tri[:, 2]] - xy[tri[:, 0]]
    return np.abs(0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))


__all__ = [
    "ANCHOR",
    "BORDER",
    "CONTOUR",
    "MASK_FILLED",
    "MASK_OK",
    "MASK_STRETCHED",
    "Jitter",
    "MeshOptions",
    "ProfileError",
    "ProfileOptions",
    "ProfiledView",
    "Profiler",
    "SourceFace",
    "SubsetVisibility",
    "ViewQuality",
    "parse_fill",
    "sweep_yaws",
    "target_angles",
    "turned_pose",
]
