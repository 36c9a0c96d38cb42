"""Pictures for people: landmark overlays, contact sheets, false-colour maps, histograms.

All functions take and return ``uint8`` RGB arrays in the canonical frame and never modify their
input.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np


def to_uint8(array: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Linearly map ``array`` from ``[lo, hi]`` (default: its finite min/max) to 0–255 uint8.

    Non-finite values map to 0.
    """
    a = np.asarray(array, dtype=np.float64)
    finite = np.isfinite(a)
    if lo is None:
        lo = float(a[finite].min()) if finite.any() else 0.0
    if hi is None:
        hi = float(a[finite].max()) if finite.any() else 1.0
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = np.clip((np.where(finite, a, lo) - lo) * scale, 0, 255)
    return np.round(out).astype(np.uint8)


def colormap(values: np.ndarray, lo: float | None = None, hi: float | None = None,
             mask: np.ndarray | None = None) -> np.ndarray:
    """False-colour (viridis) RGB image of a ``(H, W)`` map; pixels outside ``mask`` are black."""
    gray = to_uint8(values, lo, hi)
    rgb = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    if mask is not None:
        rgb[~np.asarray(mask, bool)] = 0
    return rgb


def as_rgb(image: np.ndarray) -> np.ndarray:
    """A ``(H, W, 3) uint8`` copy of a grayscale or RGB uint8 image."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = to_uint8(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3]).copy()


def draw_landmarks(image: np.ndarray, points: np.ndarray, color=(0, 255, 0),
                   radius: int | None = None, connect: bool | None = None) -> np.ndarray:
    """Draw landmarks on a copy of ``image``.

    Args:
        image: (H, W, 3) or (H, W) uint8.
        points: (K, 2) canonical frame (x right, y down); NaN points are skipped.
        color: RGB.
        radius: dot radius in pixels (default: scaled to the image size).
        connect: join the 68 iBUG points into contours (default: when K == 68).
    """
    out = as_rgb(image)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if radius is None:
        radius = max(1, int(round(max(out.shape[:2]) / 200)))
    color = tuple(int(c) for c in color)
    if connect is None:
        connect = len(pts) == 68
    if connect and len(pts) == 68:
        for start, end, closed in _IBUG_CONTOURS:
            seg = pts[start:end]
            if np.all(np.isfinite(seg)):
                cv2.polylines(out, [np.round(seg).astype(np.int32)], closed, color,
                              max(1, radius // 2), cv2.LINE_AA)
    for x, y in pts:
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(out, (int(round(x)), int(round(y))), radius, color, -1, cv2.LINE_AA)
    return out


# iBUG 68-point groups: (start, end, closed) — jaw, brows, nose bridge, nostrils, eyes, lips.
_IBUG_CONTOURS = [(0, 17, False), (17, 22, False), (22, 27, False), (27, 31, False),
                  (31, 36, False), (36, 42, True), (42, 48, True), (48, 60, True), (60, 68, True)]


def put_label(image: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner of a copy of ``image`` (white on a dark band)."""
    out = as_rgb(image)
    scale = max(0.35, out.shape[1] / 500)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(out, (0, 0), (min(out.shape[1], w + 6), h + base + 6), (0, 0, 0), -1)
    cv2.putText(out, text, (3, h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return out


def contact_sheet(tiles: Sequence[np.ndarray], ncols: int = 4,
                  labels: Sequence[str] | None = None, tile_size: int = 192) -> np.ndarray:
    """Arrange images in a grid.

    Args:
        tiles: uint8 images of any size (grayscale or RGB); each is fitted into a
            ``tile_size`` square, keeping its aspect ratio.
        ncols: columns of the grid.
        labels: optional caption per tile.

    Returns:
        ``(rows·tile_size, ncols·tile_size, 3) uint8``; an empty list gives one blank tile.
    """
    if not tiles:
        return np.zeros((tile_size, tile_size, 3), np.uint8)
    ncols = max(1, min(ncols, len(tiles)))
    rows = math.ceil(len(tiles) / ncols)
    sheet = np.full((rows * tile_size, ncols * tile_size, 3), 32, np.uint8)
    for i, tile in enumerate(tiles):
        tile = as_rgb(tile)
        h, w = tile.shape[:2]
        s = tile_size / max(h, w)
        nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        tile = cv2.resize(tile, (nw, nh), interpolation=interp)
        if labels is not None and i < len(labels) and labels[i]:
            tile = put_label(tile, str(labels[i]))
        r, c = divmod(i, ncols)
        y0 = r * tile_size + (tile_size - nh) // 2
        x0 = c * tile_size + (tile_size - nw) // 2
        sheet[y0:y0 + nh, x0:x0 + nw] = tile
    return sheet


def histogram_picture(values: np.ndarray, threshold: float, bins: int = 40,
                      title: str = "NME") -> np.ndarray:
    """A bar chart (300×520 RGB uint8) of ``values`` with ``threshold`` drawn as a red line.

    The x axis spans 0 .. 1.05·max(values, threshold); non-finite values should be removed first.
    """
    h, w, margin = 300, 520, 40
    canvas = np.full((h, w, 3), 255, np.uint8)
    values = np.asarray(values, np.float64)
    top = max(float(values.max(initial=0.0)), threshold) * 1.05 or 1.0
    counts, _ = np.histogram(values, bins=bins, range=(0.0, top))
    peak = max(int(counts.max(initial=0)), 1)
    bar_w = (w - 2 * margin) / bins
    for i, c in enumerate(counts):
        x0 = int(margin + i * bar_w)
        y0 = int(h - margin - (h - 2 * margin) * c / peak)
        cv2.rectangle(canvas, (x0, y0), (int(x0 + bar_w) - 1, h - margin), (70, 110, 200), -1)
    xt = int(margin + (w - 2 * margin) * threshold / top)
    cv2.line(canvas, (xt, margin // 2), (xt, h - margin), (220, 30, 30), 1)
    cv2.line(canvas, (margin, h - margin), (w - margin, h - margin), (0, 0, 0), 1)
    for text, org in ((f"{title} (n={values.size}, max count {peak})", (margin, 20)),
                      ("0", (margin - 4, h - margin + 18)),
                      (f"{top:.4f}", (w - margin - 40, h - margin + 18)),
                      (f"outlier > {threshold:g}", (min(xt + 4, w - 130), margin))):
        cv2.putText(canvas, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas
