"""Jaw contour handling for landmark fitting: candidate lines and landmark marching.

The 17 jaw landmarks of a 2D annotation lie on the *visible silhouette* of the face, not on fixed
mesh vertices. HPEN / 300W-LP handle this by "landmark marching" (docs/formats.md#landmark-marching): each jaw
landmark owns a horizontal line of candidate vertices across the cheek; on the side of the face
turned away from the camera the landmark is re-assigned, every iteration, to the candidate with
the extreme projected x (the silhouette). The chin (landmark 8) and the side facing the camera
keep the model's fixed landmark vertices.

Candidate lines come from ``model.contour_lines`` when present; otherwise they are derived from
the mean mesh (:func:`derive_contour_lines`); a model without a mesh cannot march and is fitted
with fixed vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Jaw landmarks are 0..16 in iBUG order; 8 is the chin tip.
JAW = np.arange(17)
CHIN = 8

#: Derived lines keep at most this many vertices (evenly spread in x) to bound the cost.
MAX_LINE_VERTICES = 48


@dataclass(frozen=True)
class ContourLines:
    """Candidate vertices per jaw landmark, padded to one length.

    Attributes:
        candidates: (17, L) int64 model vertex indices; each row holds the line's vertices (rows
            shorter than L are padded by repeating the landmark's own vertex, which every line
            contains).
        side: (17,) int8, -1 for a landmark on the model's -x side, +1 on the +x side, 0 for a
            landmark that never marches (the chin).
    """

    candidates: np.ndarray
    side: np.ndarray


def _pad_lines(lines, landmark_vertices: np.ndarray, mean: np.ndarray) -> ContourLines:
    rows = []
    for i, line in enumerate(lines):
        own = landmark_vertices[i]
        line = np.unique(np.append(np.asarray(line, dtype=np.int64), own))
        rows.append(line)
    width = max(len(r) for r in rows)
    cand = np.empty((17, width), dtype=np.int64)
    for i, r in enumerate(rows):
        cand[i, :len(r)] = r
        cand[i, len(r):] = landmark_vertices[i]
    chin_x = mean[landmark_vertices[CHIN], 0]
    side = np.sign(mean[landmark_vertices[:17], 0] - chin_x).astype(np.int8)
    side[CHIN] = 0
    return ContourLines(cand, side)


def derive_contour_lines(mean: np.ndarray, triangles: np.ndarray | None,
                         landmarks: np.ndarray) -> list[np.ndarray] | None:
    """Candidate lines from a mesh when a model has no ``contour_lines``.

    For jaw landmark ``i`` (vertex ``p``) the line holds the mesh vertices in a horizontal band
    around ``p`` (half the median vertical gap between neighbouring jaw landmarks), on the same
    side of the face as ``p``, between ``p`` and 30% of the way to the face's vertical mid-line,
    and not behind ``p`` (z >= z_p). This is the region the away-side silhouette sweeps as the
    face turns from frontal to profile.

    Args:
        mean: (N, 3) model-space mean shape (x right, y up, z towards the viewer).
        triangles: (M, 3) or None; only vertices used by a triangle are candidates.
        landmarks: (68,) landmark vertex indices.
    Returns:
        17 int64 arrays, or None when there is no mesh to derive them from.
    """
    if triangles is None or len(triangles) == 0:
        return None
    on_mesh = np.zeros(len(mean), dtype=bool)
    on_mesh[np.asarray(triangles).ravel()] = True
    jaw = mean[landmarks[:17]]
    mid_x = mean[landmarks[27:31], 0].mean()  # nose bridge and tip
    band = 0.5 * np.median(np.abs(np.diff(jaw[:, 1])))
    lines = []
    for p in jaw:
        reach = p[0] - mid_x
        rel = (mean[:, 0] - mid_x) / reach if reach != 0 else np.zeros(len(mean))
        keep = (on_mesh & (np.abs(mean[:, 1] - p[1]) <= band) & (rel >= 0.3) & (rel <= 1.0)
                & (mean[:, 2] >= p[2]))
        idx = np.nonzero(keep)[0]
        if len(idx) > MAX_LINE_VERTICES:
            order = idx[np.argsort(mean[idx, 0])]
            idx = order[np.linspace(0, len(order) - 1, MAX_LINE_VERTICES).round().astype(int)]
        lines.append(idx)
    return lines


def contour_lines_for(model, contour: str) -> ContourLines | None:
    """The candidate lines used for ``contour`` ('marching' | 'fixed') with ``model``.

    Returns None (fixed landmark vertices) for ``contour='fixed'`` and for a model that has
    neither ``contour_lines`` nor a mesh.
    """
    if contour not in ("marching", "fixed"):
        raise ValueError(f"contour: expected 'marching' or 'fixed', got {contour!r}")
    if contour == "fixed":
        return None
    mean = np.asarray(model.mean, dtype=np.float64)
    landmarks = np.asarray(model.landmarks, dtype=np.int64)
    lines = model.contour_lines
    if lines is None:
        lines = derive_contour_lines(mean, model.triangles, landmarks)
    if lines is None:
        return None
    return _pad_lines(lines, landmarks, mean)


def march(candidate_x: np.ndarray, rotation: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Pick each jaw landmark's vertex on its line for the current pose.

    Args:
        candidate_x: (B, 17, L) projected x (any monotone image-x, e.g. ``(R·S)_x``) of every
            candidate vertex, with the current shape.
        rotation: (B, 3, 3) the 300W-LP rotation (applied as ``R @ S``).
        side: (17,) from :class:`ContourLines`.
    Returns:
        (B, 17) int64 column index into the candidate rows; -1 where the landmark keeps its fixed
        vertex (the chin, and the side facing the camera).
    """
    # (R e_x)_z > 0: the model's +x side turns towards the camera, so the -x side turns away.
    turn = np.sign(rotation[:, 2, 0])[:, None]                     # (B, 1)
    away = (side[None, :] != 0) & (side[None, :] == -turn)          # (B, 17)
    # Silhouette on the away side = the extreme x: minimum on the -x side, maximum on the +x side.
    pick = np.where(side[None, :, None] < 0, np.argmin(candidate_x, axis=2)[..., None],
                    np.argmax(candidate_x, axis=2)[..., None])[..., 0]
    return np.where(away, pick, -1)
