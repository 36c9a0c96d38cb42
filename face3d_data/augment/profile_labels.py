"""Labels of a profiled view, and mirroring (``_Flip``) of a fitted face.

Every label is recomputed from the 3DMM parameters for the view's pose (never copied from the
source, which is 300W-LP's ``pt2d``/``roi`` trap):

- ``pt3d_68`` (3D-style): the model's 68 landmark vertices projected with the view's
  ``Pose_Para`` (canonical x, y and z).
- ``pt2d`` (2D-style): the same, but the jaw landmarks on the side turned away from the camera are
  re-marched onto the silhouette (:mod:`face3d_data.fitting.contour`).
- ``roi``: the square box around the projected landmarks
  (:func:`face3d_data.w300lp.labels.roi_of_points`, the rule :mod:`face3d_data.w300lp.synth` uses).
- ``landmarks/<name>_pts.mat``: ``pts_2d`` = ``pt2d``, ``pts_3d`` = the projected landmarks' x, y.

Mirroring: the image is flipped left-right (canonical ``x' = W - 1 - x``); the face is mirrored in
model space about the model's mid-sagittal plane ``x = x0`` with the model's left/right vertex map
(:class:`MirrorMap`), and its coefficients are those of the model's best least-squares fit to the
mirrored mesh (a fixed linear map per model). The pose becomes ``(pitch, -yaw, -roll)`` with
``tx' = W + 1 - tx`` (300W-LP's ``_Flip`` rule) plus the shift that keeps the plane in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from face3d_data.fitting.contour import contour_lines_for, march
from face3d_data.w300lp.labels import labels_to_mat, roi_of_points
from face3d_data.w300lp.pose import angles_to_matrix, check_pose_para, project

#: Landmarks on the face's mid-line (iBUG order): nose bridge and tip, lips' centres, chin.
MIDLINE = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)

#: Fields whose value depends on the camera and is not recomputed (dropped from rotated views).
VIEW_DEPENDENT = ("SH_Para",)


@dataclass(frozen=True)
class ViewLandmarks:
    """Landmarks of one view (canonical frame: 0-based, y down).

    Attributes:
        pt2d: (68, 2) 2D-style (jaw marched to the silhouette).
        pt3d: (68, 3) 3D-style projected landmark vertices, z larger = closer.
        roi: (4,) float64 canonical ``[x1, y1, x2, y2]`` (stored 1-based by ``labels_to_mat``).
        jaw_vertices: (17,) the model vertex each jaw landmark sits on.
    """

    pt2d: np.ndarray
    pt3d: np.ndarray
    roi: np.ndarray
    jaw_vertices: np.ndarray


class LandmarkRule:
    """The per-model part of :func:`view_landmarks` (candidate lines), built once."""

    def __init__(self, model):
        self.model = model
        self.lines = contour_lines_for(model, "marching")

    def __call__(self, vertices: np.ndarray, pose_para, image_hw) -> ViewLandmarks:
        """Landmarks of ``vertices`` (N, 3) model space seen with ``pose_para`` in ``image_hw``."""
        model = self.model
        pose = check_pose_para(pose_para)
        lm = np.asarray(model.landmarks)
        pt3d = project(vertices[lm], pose, image_hw)
        jaw = lm[:17].copy()
        pt2d = pt3d[:, :2].copy()
        if self.lines is not None:
            cand = self.lines.candidates
            cand_x = project(vertices[cand.ravel()], pose, image_hw)[:, 0].reshape(cand.shape)
            R = angles_to_matrix(*pose[:3])
            col = march(cand_x[None], R[None], self.lines.side)[0]
            moved = col >= 0
            jaw[moved] = cand[np.nonzero(moved)[0], col[moved]]
            pt2d[:17] = project(vertices[jaw], pose, image_hw)[:, :2]
        return ViewLandmarks(pt2d=pt2d, pt3d=pt3d, roi=roi_of_points(pt3d), jaw_vertices=jaw)


def view_landmarks(model, vertices: np.ndarray, pose_para, image_hw) -> ViewLandmarks:
    """Landmarks of one view; see the module docstring (builds a :class:`LandmarkRule`)."""
    return LandmarkRule(model)(vertices, pose_para, image_hw)


def label_fields(source_fields: dict, pose_para, landmarks: ViewLandmarks,
                 shape_para=None, exp_para=None) -> dict:
    """The ``.mat`` fields of a view: the source's fields with ``Pose_Para``, ``pt2d``,
    ``pt3d_68`` and ``roi`` replaced (300W-LP shapes and dtypes), :data:`VIEW_DEPENDENT` fields
    dropped, and ``Shape_Para``/``Exp_Para`` replaced when given (mirrored views)."""
    src = {k: v for k, v in source_fields.items() if k not in VIEW_DEPENDENT}
    shape = src["Shape_Para"] if shape_para is None else \
        np.asarray(shape_para).astype(np.asarray(src["Shape_Para"]).dtype)
    exp = src["Exp_Para"] if exp_para is None else \
        np.asarray(exp_para).astype(np.asarray(src["Exp_Para"]).dtype)
    new = labels_to_mat(pose_para, shape, exp, pt2d=landmarks.pt2d, pt3d_68=landmarks.pt3d,
                        roi=landmarks.roi)
    out = dict(src)
    for key in ("Pose_Para", "Shape_Para", "Exp_Para", "pt2d", "pt3d_68", "roi"):
        out[key] = new[key]
    return out


class MirrorMap:
    """Left/right mirroring of a model's faces (see the module docstring).

    Attributes:
        plane_x: x0 of the mirror plane ``x = x0`` in model space (mean x of the mean shape's
            mid-line landmarks).
        vertex_map: (N,) int64, ``vertex_map[i]`` = the vertex on the other side of vertex ``i``
            (nearest vertex to i's mirror image on the mean shape).
        map_error: mean distance (model units) between a mirrored mean vertex and its match.
    """

    def __init__(self, model, ridge: float = 1e-6):
        self.model = model
        mean = np.asarray(model.mean, np.float64)
        self.plane_x = float(mean[np.asarray(model.landmarks)[list(MIDLINE)], 0].mean())
        mirrored = mean.copy()
        mirrored[:, 0] = 2 * self.plane_x - mirrored[:, 0]
        dist, self.vertex_map = cKDTree(mean).query(mirrored)
        self.vertex_map = self.vertex_map.astype(np.int64)
        self.map_error = float(np.mean(dist))
        ks = model.n_shape
        mean_m = self.mirror_vertices(mean)
        self._shape = self._projection(model.shape_basis, model.shape_std, ridge)
        self._exp = self._projection(model.exp_basis, model.exp_std, ridge)
        self._shape_offset = self._shape[0] @ (mean_m - mean).ravel() if ks else np.zeros(0)
        # coefficient maps: mirrored basis projected back onto the basis
        self._shape_map = self._map(model.shape_basis, self._shape)
        self._exp_map = self._map(model.exp_basis, self._exp)

    def mirror_vertices(self, vertices: np.ndarray) -> np.ndarray:
        """(N, 3) model-space vertices of the mirrored face (same vertex order)."""
        v = np.asarray(vertices, np.float64)[self.vertex_map].copy()
        v[:, 0] = 2 * self.plane_x - v[:, 0]
        return v

    def _mirror_basis(self, basis: np.ndarray) -> np.ndarray:
        b = np.asarray(basis, np.float64)[self.vertex_map].copy()
        b[:, 0, :] *= -1.0
        return b

    @staticmethod
    def _projection(basis, std, ridge):
        k = basis.shape[2]
        if k == 0:
            return (np.zeros((0, basis.shape[0] * 3)),)
        b = np.asarray(basis, np.float64).reshape(-1, k)
        gram = b.T @ b
        reg = ridge * np.trace(gram) / k
        pinv = np.linalg.solve(gram + reg * np.eye(k), b.T)
        return (pinv,)

    def _map(self, basis, projection):
        k = basis.shape[2]
        if k == 0:
            return np.zeros((0, 0))
        return projection[0] @ self._mirror_basis(basis).reshape(-1, k)

    def coefficients(self, shape_para, exp_para):
        """Coefficients (Ks,), (Ke,) float64 of the mirrored face."""
        s = np.zeros(self.model.n_shape)
        e = np.zeros(self.model.n_exp)
        sp_, ep_ = np.ravel(shape_para).astype(np.float64), np.ravel(exp_para).astype(np.float64)
        s[:sp_.size], e[:ep_.size] = sp_, ep_
        return self._shape_offset + self._shape_map @ s, self._exp_map @ e

    def pose(self, pose_para, image_w: int) -> np.ndarray:
        """(7,) float64 ``Pose_Para`` of the mirrored face in the left-right flipped image."""
        p = check_pose_para(pose_para).copy()
        d = np.diag([-1.0, 1.0, 1.0])
        R_m = d @ angles_to_matrix(*p[:3]) @ d
        t = d @ p[3:6] + np.array([image_w + 1.0, 0.0, 0.0])
        t -= p[6] * (R_m @ np.array([2 * self.plane_x, 0.0, 0.0]))
        return np.array([p[0], -p[1], -p[2], t[0], t[1], t[2], p[6]])
