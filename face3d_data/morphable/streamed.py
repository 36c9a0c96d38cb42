"""Many small batches of model vertices with the basis read once: :func:`grouped_vertices`.

:meth:`MorphableModel.vertices` evaluates one batch as one matrix product ``(B, K) @ (K, 3N)``.
For a BFM-sized model the basis is 146 MB, so a product over a few faces is bound by reading it
from memory. :func:`grouped_vertices` evaluates several batches ("groups") and returns, for each,
exactly the bytes that ``model.vertices`` gives for that group alone, while streaming the basis
once for all of them: the basis rows are cut into tiles that stay in cache, and every group's
product is taken tile by tile.

Why that is exact, and when it is not used: a BLAS product's per-element summation order depends
on the product's shape (a row of a 2-face product is not bit-equal to the same row of a 64-face
product), so the groups are never merged; each group's tile products have the group's own shape.
OpenBLAS computes a row of ``basis @ coef.T`` the same way wherever the row lies in the matrix,
except in the first block of rows of a call (``GEMM_P`` rows, where it splits the faces into
narrower panels). Each tile's product is therefore taken over a lead of extra rows before the
tile, which are discarded (:data:`TILES`). Whether this reproduces the one-call product bit for bit is
checked once per process and shape on a slice of the model's own basis (:func:`streaming_is_exact`),
and only with single-threaded BLAS (as in the stage runner's workers); otherwise every group is
one product, as in ``model.vertices``.
"""

from __future__ import annotations

import numpy as np

#: (basis rows per tile, rows computed before each tile and discarded), tried in order: the lead
#: must cover OpenBLAS's GEMM_P (320 for its Haswell kernels on AMD Zen; up to 768 on other x86).
#: 2560 rows x 228 modes x 4 bytes = 2.3 MB stays in cache even with other processes on the
#: machine (5.6 MB tiles did not: slower than one pass per group at load 5-10).
TILES = ((2560, 320), (6144, 768))
TILE_ROWS, LEAD_ROWS = TILES[0]

_EXACT: dict[tuple, bool] = {}
_CONTROLLER = None


def _blas_single_threaded() -> bool:
    """True when every BLAS pool numpy may use runs one thread (the stage workers' setting)."""
    global _CONTROLLER
    try:
        if _CONTROLLER is None:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER = ThreadpoolController()
        return all(c.get_num_threads() == 1 for c in _CONTROLLER.lib_controllers if c.user_api == "blas")
    except Exception:  # noqa: BLE001 - no way to tell: take the plain path
        return False


def _one_product(coef: np.ndarray, block: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``model.vertices``' arithmetic: one (B, 3N) product plus the mean."""
    flat = coef @ block.T
    flat += mean
    return flat


def _tiled(coefs: list[np.ndarray], block: np.ndarray, mean: np.ndarray,
           tile: int = TILE_ROWS, lead: int = LEAD_ROWS) -> list[np.ndarray]:
    """Every group's (B, 3N) product taken tile by tile (module docstring)."""
    rows = block.shape[0]
    outs = [np.empty((len(c), rows), np.float32) for c in coefs]
    for r0 in range(0, rows, tile):
        r1 = min(rows, r0 + tile)
        before = min(r0, lead)
        part = block[r0 - before:r1].T
        m = mean[r0:r1]
        for coef, out in zip(coefs, outs):
            np.add((coef @ part)[:, before:], m, out=out[:, r0:r1])
    return outs


def streaming_is_exact(block: np.ndarray, sizes, tile: int = TILE_ROWS, lead: int = LEAD_ROWS) -> bool:
    """Whether tiled products equal one-call products bit for bit, on this BLAS, for a (R, K)
    float32 ``block`` and groups of each of ``sizes`` faces (checked with random coefficients on
    rows of ``block`` covering a first, a middle and a last tile; remembered per shape and
    group size for the process)."""
    rows, k = block.shape
    if rows <= tile:
        return True  # one tile: the product is the one-call product
    probe = None
    for size in sorted({int(n) for n in sizes}):
        key = (k, rows % tile, tile, lead, size, block.dtype.str)
        if key not in _EXACT:
            if probe is None:
                probe = np.ascontiguousarray(block[:min(rows, 2 * tile + rows % tile)])
                zero = np.zeros(len(probe), np.float32)
            coef = np.random.default_rng(size).standard_normal((size, k)).astype(np.float32)
            _EXACT[key] = np.array_equal(_tiled([coef], probe, zero, tile, lead)[0],
                                         _one_product(coef, probe, zero))
        if not _EXACT[key]:
            return False
    return True


def grouped_vertices(model, groups: list[np.ndarray]) -> list[np.ndarray]:
    """``[model.vertices(g[:, :Ks], g[:, Ks:]) for g in groups]``, bit for bit, basis read once.

    Args:
        model: a :class:`~face3d_data.morphable.MorphableModel`.
        groups: (B_g, Ks + Ke) float32 coefficient arrays (shape modes then expression modes,
            zero-padded to the model's counts), B_g >= 1.

    Returns:
        one (B_g, N, 3) float32 array per group, model space.
    """
    block = model.basis_matrix
    mean = model.mean.reshape(-1)
    coefs = []
    for g in groups:
        coef = np.asarray(g)
        if coef.dtype != np.float32 or coef.ndim != 2 or coef.shape[1] != block.shape[1] or len(coef) == 0:
            raise ValueError(f"groups: expected (B, {block.shape[1]}) float32 arrays with B >= 1, "
                             f"got {coef.dtype} {coef.shape}")
        if not np.all(np.isfinite(coef)):
            raise ValueError("groups: coefficients contain NaN or infinite values")
        coefs.append(coef)
    if not coefs:
        return []
    flats = None
    if len(coefs) > 1 and _blas_single_threaded():
        sizes = [len(c) for c in coefs]
        for tile, lead in TILES:
            if streaming_is_exact(block, sizes, tile, lead):
                flats = _tiled(coefs, block, mean, tile, lead)
                break
    if flats is None:
        flats = [_one_product(c, block, mean) for c in coefs]
    n = model.n_vertices
    return [flat.reshape(len(flat), n, 3) for flat in flats]
