"""Test helpers: random models of any size and tiny fixtures in the real BFM file formats.

Used by this package's tests, by benchmarks, and by other modules' tests (fitting, posmap, ...).
Nothing here is licensed data: every array is random or synthetic.
"""

from __future__ import annotations

import numpy as np

from face3d_data.morphable.model import MorphableModel


def grid_triangles(rows: int, cols: int) -> np.ndarray:
    """(2·(rows-1)·(cols-1), 3) int32 triangles of a row-major ``rows × cols`` vertex grid."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cols - 1), indexing="ij")
    a = (r * cols + c).ravel()
    b, d, e = a + 1, a + cols, a + cols + 1
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.int32)


def random_model(n_vertices: int = 500, n_shape: int = 10, n_exp: int = 5, seed: int = 0, *,
                 n_tex: int = 0, convention: str = "raw", with_uv: bool = True) -> MorphableModel:
    """A random, well-formed model in BFM-like units (a face-sized curved sheet, ~1.5e5 wide).

    The vertices lie on a near-square grid (the last row may be partial; triangles only join full
    cells), so triangles, UVs and subsets are meaningful. Basis columns have unit norm with raw
    stds decreasing like BFM's (``shape_std[0] ~ 5e5``); expression stds are O(1) with columns
    scaled to ~1e4 µm displacements, like 3DDFA's. 68 landmarks are distinct random vertices;
    contour lines are 17 short vertex runs.

    Args:
        n_vertices: N >= 68.
        n_shape, n_exp, n_tex: component counts (``n_tex`` 0 = no texture).
        seed: the random seed (same seed, same model).
        convention: "raw" or "normalized" (the normalized one is the raw one converted).
    """
    if n_vertices < 68:
        raise ValueError(f"n_vertices: need at least 68 vertices for the landmarks, got {n_vertices}")
    rng = np.random.default_rng(seed)
    cols = int(np.ceil(np.sqrt(n_vertices)))
    rows = int(np.ceil(n_vertices / cols))
    idx = np.arange(n_vertices)
    gx = (idx % cols) / max(cols - 1, 1) - 0.5
    gy = 0.5 - (idx // cols) / max(rows - 1, 1)
    mean = np.stack([gx * 1.5e5, gy * 1.8e5, 4e4 * (1 - 2 * gx ** 2 - 2 * gy ** 2)], 1)
    tri = grid_triangles(rows, cols)
    tri = tri[np.all(tri < n_vertices, axis=1)]

    def unit_columns(k):
        b = rng.standard_normal((n_vertices * 3, k)).astype(np.float32)
        b /= np.linalg.norm(b, axis=0, keepdims=True)
        return b.reshape(n_vertices, 3, k)

    shape_std = (5e5 / np.sqrt(np.arange(1, n_shape + 1))).astype(np.float32)
    exp_basis = unit_columns(n_exp) * np.float32(1e4)
    exp_std = (1.5 / np.sqrt(np.arange(1, n_exp + 1))).astype(np.float32)
    kw = {}
    if n_tex:
        kw = dict(tex_mean=np.clip(rng.normal(150, 20, (n_vertices, 3)), 0, 255),
                  tex_basis=unit_columns(n_tex),
                  tex_std=(3e3 / np.sqrt(np.arange(1, n_tex + 1))).astype(np.float32))
    lines = [np.arange(i * 3, i * 3 + 5) % n_vertices for i in range(17)]
    uv = np.stack([gx + 0.5, gy + 0.5], 1) if with_uv else None
    regions = np.where(gx ** 2 + gy ** 2 < 0.16, 1, 0).astype(np.uint8)
    model = MorphableModel(mean, unit_columns(n_shape), shape_std, exp_basis, exp_std,
                           triangles=tri, landmarks=rng.choice(n_vertices, 68, replace=False),
                           uv=uv, regions=regions, contour_lines=lines,
                           name=f"random(seed={seed})", **kw)
    return model.to_convention(convention)
