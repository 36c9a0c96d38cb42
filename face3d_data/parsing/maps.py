"""Parsing maps: per-pixel face-part classes of a projected mesh, by z-buffer.

Frame: ``projected`` vertices are in the canonical image frame (0-based, x right, y down, pixel
centres at integers; z larger = closer), e.g. :func:`face3d_data.w300lp.project`. Maps are (H, W)
like the image they belong to.

A covered pixel takes the class of the **nearest corner** of the visible triangle (the largest
barycentric weight), so a class boundary follows the mesh's labels to within half a triangle and
classes never mix in the hard map. Classes are given per vertex, (N,), or per triangle corner,
(M, 3) (:meth:`face3d_data.parsing.PartLabeller.corner_classes`, which makes the triangles that
close the mouth inner mouth throughout). A pixel no triangle covers is background (0),
exactly the pixels where :func:`face3d_data.render.rasterize` returns triangle id −1.

The soft map renders the hard map ``s`` times larger in each axis (sub-pixel sample
``(x + (i + 0.5)/s − 0.5, y + (j + 0.5)/s − 0.5)`` for ``i, j`` in ``0..s−1``) and returns each
class's share of the ``s²`` samples: an anti-aliased map whose classes sum to 1 per pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from face3d_data.parsing.classes import CLASS_TABLE, COLORS, N_CLASSES
from face3d_data.render import Raster, rasterize


def _corner_table(triangles: np.ndarray, classes: np.ndarray, n_vertices: int) -> np.ndarray:
    """(M + 1, 3) uint8 class of each triangle corner, plus a background row for triangle id −1."""
    tri = np.asarray(triangles)
    classes = np.asarray(classes)
    corner = np.zeros((len(tri) + 1, 3), np.uint8)
    if classes.shape == (len(tri), 3):
        corner[:-1] = classes
    elif classes.shape == (n_vertices,):
        corner[:-1] = classes.astype(np.uint8)[tri]
    else:
        raise ValueError(f"classes: expected ({n_vertices},) per vertex or ({len(tri)}, 3) per corner, "
                         f"got {classes.shape}")
    return corner


def labels_from_raster(raster: Raster, triangles: np.ndarray, classes: np.ndarray,
                       n_vertices: int | None = None) -> np.ndarray:
    """(H, W) uint8 class map from a raster of ``triangles``.

    Args:
        classes: (N,) per-vertex or (M, 3) per-corner class ids.
        n_vertices: N (default: 1 + the largest vertex id in ``triangles``).
    """
    tri = np.asarray(triangles)
    n = int(tri.max()) + 1 if n_vertices is None else int(n_vertices)
    corner = _corner_table(tri, classes, n)  # -1 % (M + 1) = M: the background row
    tid = raster.triangle_id
    out = np.zeros(tid.shape, np.uint8)
    covered_rows = np.flatnonzero((tid >= 0).any(axis=-1))   # work on the face's bounding box only
    covered_cols = np.flatnonzero((tid >= 0).any(axis=-2))
    if not covered_rows.size:
        return out
    window = (..., slice(covered_rows[0], covered_rows[-1] + 1), slice(covered_cols[0], covered_cols[-1] + 1))
    b = raster.barycentric[window + (slice(None),)]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    nearest = np.where(b1 > b0, np.where(b2 > b1, 2, 1), np.where(b2 > b0, 2, 0))  # first largest weight
    rows = tid[window] % (len(tri) + 1)
    out[window] = corner.ravel()[rows * 3 + nearest]
    return out


def label_map(projected: np.ndarray, triangles: np.ndarray, classes: np.ndarray,
              height: int, width: int) -> np.ndarray:
    """The hard parsing map.

    Args:
        projected: (N, 3) canonical image frame vertices.
        triangles: (M, 3) vertex ids.
        classes: (N,) per-vertex or (M, 3) per-corner uint8 class ids (1..10; see
            :mod:`face3d_data.parsing.classes`).
        height, width: map size.
    Returns:
        (H, W) uint8 class ids, 0 = background.
    """
    return labels_from_raster(rasterize(projected, triangles, height, width), triangles, classes,
                              len(projected))


def soft_label_map(projected: np.ndarray, triangles: np.ndarray, classes: np.ndarray,
                   height: int, width: int, supersample: int = 4) -> np.ndarray:
    """The anti-aliased map: (H, W, C) float32 class shares over ``supersample²`` samples per pixel.

    ``C`` = :data:`~face3d_data.parsing.classes.N_CLASSES`; every pixel sums to 1 (background
    included). ``supersample=1`` gives the one-hot of :func:`label_map`.
    """
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample: must be >= 1, got {supersample}")
    v = np.array(projected, np.float64)
    v[:, :2] = (v[:, :2] + 0.5) * s - 0.5
    fine = label_map(v, triangles, classes, height * s, width * s)
    rows = np.arange(height * s) // s
    cols = np.arange(width * s) // s
    pixel = rows[:, None] * width + cols[None, :]
    counts = np.bincount((pixel * N_CLASSES + fine).ravel(), minlength=height * width * N_CLASSES)
    return (counts.reshape(height, width, N_CLASSES) / float(s * s)).astype(np.float32)


def one_hot(labels: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """(H, W) class ids -> (H, W, n_classes) uint8 0/1."""
    labels = np.asarray(labels)
    if labels.size and labels.max() >= n_classes:
        raise ValueError(f"labels: id {int(labels.max())} >= n_classes {n_classes}")
    return np.eye(n_classes, dtype=np.uint8)[labels]


def color_map(labels: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 preview colours (the class table's)."""
    return COLORS[np.asarray(labels)]


def overlay(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image with the class colours blended in (weight ``alpha``) where a part is labelled."""
    img = np.asarray(image)
    if img.shape[:2] != np.asarray(labels).shape:
        raise ValueError(f"image {img.shape[:2]} and labels {np.asarray(labels).shape} differ in size")
    out = img.astype(np.float32)
    covered = np.asarray(labels) > 0
    out[covered] = (1 - alpha) * out[covered] + alpha * color_map(labels)[covered]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def face_box(labels: np.ndarray, margin: float = 0.15) -> tuple[int, int, int, int]:
    """Square box ``(x0, y0, x1, y1)`` (exclusive ends) around the labelled pixels, ``margin`` of its
    side added on each side and clipped to the map; the whole map when nothing is labelled."""
    labels = np.asarray(labels)
    h, w = labels.shape
    ys, xs = np.nonzero(labels)
    if not len(xs):
        return 0, 0, w, h
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    half = (max(xs.max() - xs.min(), ys.max() - ys.min()) + 1) * (0.5 + margin)
    x0, y0 = max(0, int(np.floor(cx - half))), max(0, int(np.floor(cy - half)))
    return x0, y0, min(w, int(np.ceil(cx + half)) + 1), min(h, int(np.ceil(cy + half)) + 1)


def legend(size: int) -> np.ndarray:
    """(size, size, 3) uint8 white tile listing the classes (colour swatch + name), background omitted."""
    tile = np.full((size, size, 3), 255, np.uint8)
    rows = len(CLASS_TABLE) - 1
    step = size / rows
    scale = max(0.25, min(0.45, step / 30))
    for i, (_, name, color) in enumerate(CLASS_TABLE[1:]):
        y = int((i + 0.5) * step)
        half = max(2, int(step * 0.3))
        cv2.rectangle(tile, (4, y - half), (4 + 2 * half, y + half), tuple(int(c) for c in color), -1)
        cv2.putText(tile, name.replace("_", " "), (8 + 2 * half, y + half), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def preview_tile(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, size: int = 192) -> np.ndarray:
    """A 2×2 picture of one sample, cropped to the face: image | overlay, class colours | legend.

    Returns (2·size, 2·size, 3) uint8.
    """
    x0, y0, x1, y1 = face_box(labels)
    crop, lab = np.asarray(image)[y0:y1, x0:x1], np.asarray(labels)[y0:y1, x0:x1]
    if crop.ndim == 2:
        crop = np.repeat(crop[..., None], 3, axis=-1)

    def fit(a, interpolation):
        return cv2.resize(a, (size, size), interpolation=interpolation)

    img = fit(crop, cv2.INTER_AREA)
    lab = fit(lab, cv2.INTER_NEAREST)
    top = np.concatenate([img, overlay(img, lab, alpha)], axis=1)
    bottom = np.concatenate([color_map(lab), legend(size)], axis=1)
    return np.concatenate([top, bottom], axis=0)
