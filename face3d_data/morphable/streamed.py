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

Merging, where the BLAS allows it: a product over a few faces is also slow per face because the
BLAS's packing and kernel set-up are paid per call and its micro-kernels are built for wider
panels. On some BLAS kernels (OpenBLAS's SkylakeX kernel, for one) a face's row of one product over
all groups is bit-equal to the same row of its group's own product, except for groups of some
sizes at some positions (a tail panel of another width). :func:`merging_is_exact` finds out, per
group position (offset, size, faces in all), with random coefficients on rows of the model's own
basis laid out like the full basis (:data:`PROBE_ROWS`); the groups it vouches for are taken from one
merged product, the others as above. Where it vouches for none (OpenBLAS's Haswell kernel, also
used on AMD Zen: rows of a 64-face product differ in the last bits from an 8-face product's all
along the basis) nothing changes.
"""

from __future__ import annotations

import numpy as np

#: (basis rows per tile, rows computed before each tile and discarded), tried in order: the lead
#: must cover OpenBLAS's GEMM_P (320 for its Haswell kernels on AMD Zen; up to 768 on other x86).
#: 2560 rows x 228 modes x 4 bytes = 2.3 MB stays in cache even with other processes on the
#: machine (5.6 MB tiles did not: slower than one pass per group at load 5-10).
TILES = ((2560, 320), (6144, 768))
TILE_ROWS, LEAD_ROWS = TILES[0]

#: rows of the merge probe, modulo which it keeps the basis's row count: a multiple of every x86
#: OpenBLAS sgemm GEMM_P (256..960) and micro-kernel height, so that the probe's blocks of rows
#: (first, middle, last, and the split of the last two) have the full product's structure.
PROBE_ROWS = 7680

_EXACT: dict[tuple, bool] = {}
_MERGE_EXACT: dict[tuple, bool] = {}
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


def merging_is_exact(block: np.ndarray, sizes) -> list[bool]:
    """For consecutive groups of ``sizes`` faces: whether each group's rows of one product over
    all groups equal its own one-call product bit for bit, on this BLAS, for a (R, K) float32
    ``block`` (module docstring).

    Checked with random coefficients on the first ``2 * PROBE_ROWS + R % PROBE_ROWS`` rows of
    ``block`` (all of them when fewer), and remembered per (group offset, group size, faces in
    all, K, R mod PROBE_ROWS) for the process: the arithmetic of a product does not depend on the
    values it multiplies, only on its shape and a row's and face's place in it.
    """
    rows, k = block.shape
    sizes = [int(n) for n in sizes]
    total = sum(sizes)
    offsets = np.cumsum([0] + sizes[:-1]).tolist()
    probe_rows = min(rows, 2 * PROBE_ROWS + rows % PROBE_ROWS)
    shape_key = (k, ("all", rows) if probe_rows == rows else ("mod", rows % PROBE_ROWS), block.dtype.str, total)
    keys = [shape_key + (o, n) for o, n in zip(offsets, sizes)]
    missing = [i for i, key in enumerate(keys) if key not in _MERGE_EXACT]
    if missing:
        probe = np.ascontiguousarray(block[:probe_rows])
        coef = np.random.default_rng(total).standard_normal((total, k)).astype(block.dtype)
        merged = coef @ probe.T
        for i in missing:
            o, n = offsets[i], sizes[i]
            _MERGE_EXACT[keys[i]] = np.array_equal(merged[o:o + n], coef[o:o + n] @ probe.T)
    return [_MERGE_EXACT[key] for key in keys]


def _separate(coefs: list[np.ndarray], block: np.ndarray, mean: np.ndarray) -> list[np.ndarray]:
    """Each group's own product, the basis streamed once when that is exact (module docstring)."""
    if len(coefs) > 1 and _blas_single_threaded():
        sizes = [len(c) for c in coefs]
        for tile, lead in TILES:
            if streaming_is_exact(block, sizes, tile, lead):
                return _tiled(coefs, block, mean, tile, lead)
    return [_one_product(c, block, mean) for c in coefs]


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
    exact = merging_is_exact(block, [len(c) for c in coefs]) \
        if len(coefs) > 1 and _blas_single_threaded() else [False] * len(coefs)
    flats: list = [None] * len(coefs)
    # one product over all faces pays when most of them can be taken from it
    if 2 * sum(len(c) for c, e in zip(coefs, exact) if e) >= sum(len(c) for c in coefs):
        merged = _one_product(np.concatenate(coefs), block, mean)
        start = 0
        for i, coef in enumerate(coefs):
            if exact[i]:
                flats[i] = merged[start:start + len(coef)]
            start += len(coef)
    rest = [i for i, flat in enumerate(flats) if flat is None]
    for i, flat in zip(rest, _separate([coefs[i] for i in rest], block, mean)):
        flats[i] = flat
    n = model.n_vertices
    return [flat.reshape(len(flat), n, 3) for flat in flats]
