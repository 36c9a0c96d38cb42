"""Sparse symmetric positive definite solves on a FIXED sparsity pattern.

The non-rigid ICP normal matrix keeps the same non-zero pattern for a whole registration; only
its values change (stiffness, correspondence weights). :class:`FixedPattern` records that
pattern once, as the union of every term's COO entries, and maps each COO entry to a slot in a
CSC ``data`` array. Values are then summed with ``np.bincount`` into that array, so an entry
whose value happens to be exactly zero (a vertex with weight 0) keeps its slot. SciPy's sparse
addition would silently drop it, and a solver that reuses a symbolic analysis would then factor
a different matrix.

Backends (:func:`make_solver`):

- ``qdldl``: LDLᵀ with an AMD ordering; the symbolic analysis is done once, each step only
  refactorises numerically (``Solver.update``). Installable from wheels (``pip install qdldl``).
- ``cholmod``: scikit-sparse's CHOLMOD (``analyze`` once, ``cholesky_inplace`` per step), when
  ``sksparse`` imports (it builds from source against SuiteSparse).
- ``cholespy``: CHOLMOD bundled in a wheel; it has no refactorisation call, so it analyses again
  each step.
- ``splu``: SciPy's SuperLU, fresh each step (always available; the slow fallback).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

BACKENDS = ("qdldl", "cholmod", "cholespy", "splu")


class FixedPattern:
    """A symmetric ``n × n`` sparsity pattern built once from COO index arrays.

    Args:
        n: matrix size.
        rows, cols: int arrays of the entries of every term that will ever be summed (both
            triangles, or one: entries are mirrored and de-duplicated).
    Attributes:
        upper: CSC ``(indptr, indices)`` of the upper triangle (row <= col), sorted.
    """

    def __init__(self, n: int, rows: np.ndarray, cols: np.ndarray):
        self.n = int(n)
        r = np.asarray(rows, np.int64).ravel()
        c = np.asarray(cols, np.int64).ravel()
        lo, hi = np.minimum(r, c), np.maximum(r, c)
        # CSC order of the upper triangle: by column (hi), then row (lo)
        key = hi * self.n + lo
        uniq = np.unique(key)
        self.nnz = len(uniq)
        self._keys = uniq
        col = uniq // self.n
        self.indices = (uniq % self.n).astype(np.int32)
        self.indptr = np.searchsorted(col, np.arange(self.n + 1)).astype(np.int32)
        self._col = col.astype(np.int32)

    def slots(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """CSC data slots of entries ``(rows, cols)`` (either triangle); every entry must be in the pattern."""
        r = np.asarray(rows, np.int64).ravel()
        c = np.asarray(cols, np.int64).ravel()
        key = np.maximum(r, c) * self.n + np.minimum(r, c)
        pos = np.searchsorted(self._keys, key)
        if np.any(pos >= self.nnz) or np.any(self._keys[np.minimum(pos, self.nnz - 1)] != key):
            raise ValueError("FixedPattern.slots: an entry is outside the pattern")
        return pos

    def upper_matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """The upper triangle as a CSC matrix sharing the fixed pattern (explicit zeros kept)."""
        m = sp.csc_matrix((np.asarray(data, np.float64), self.indices, self.indptr), shape=(self.n, self.n))
        m.has_sorted_indices = True
        return m

    def full_matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """The whole symmetric matrix (for solvers that need both triangles)."""
        up = self.upper_matrix(data)
        diag = up.diagonal()
        return (up + up.T - sp.diags(diag)).tocsc()


def available_backends() -> list[str]:
    """The backends that import here, fastest first as measured (``splu`` always).

    Measured on the 2-core machine (one BLAS thread), one factorisation of the NICP normal matrix:
    14k-vertex template cholespy 1.2 s, qdldl 1.7 s, splu 2.7 s; 56k vertices cholespy 8 s,
    qdldl 18-20 s (see benchmarks/registration.py).
    """
    out = []
    try:
        from sksparse.cholmod import analyze  # noqa: F401
        out.append("cholmod")
    except ImportError:
        pass
    try:
        import cholespy  # noqa: F401
        out.append("cholespy")
    except ImportError:
        pass
    try:
        import qdldl  # noqa: F401
        out.append("qdldl")
    except ImportError:
        pass
    out.append("splu")
    return out


def resolve_backend(name: str) -> str:
    """``auto`` -> the preferred available backend; otherwise check that ``name`` imports."""
    avail = available_backends()
    if name == "auto":
        return avail[0]
    if name not in BACKENDS:
        raise ValueError(f"solver: expected auto or one of {BACKENDS}, got {name!r}")
    if name not in avail:
        raise ValueError(f"solver {name!r} is not installed (available: {', '.join(avail)})")
    return name


class PatternSolver:
    """Factor-and-solve on one :class:`FixedPattern`; ``factor(data)`` then ``solve(rhs)``.

    The first ``factor`` call does the symbolic analysis (for backends that can reuse it); later
    calls refactorise numerically. ``solve`` takes ``(n,)`` or ``(n, k)`` right-hand sides.
    """

    def __init__(self, pattern: FixedPattern, backend: str = "auto"):
        self.pattern = pattern
        self.backend = resolve_backend(backend)
        self._state = None
        self.factorizations = 0

    def factor(self, data: np.ndarray) -> None:
        data = np.ascontiguousarray(data, np.float64)
        if data.shape != (self.pattern.nnz,):
            raise ValueError(f"data: expected ({self.pattern.nnz},) values, got {data.shape}")
        b = self.backend
        if b == "qdldl":
            import qdldl

            up = self.pattern.upper_matrix(data)
            if self._state is None:
                self._state = qdldl.Solver(up, upper=True)
            else:
                self._state.update(up, upper=True)
        elif b == "cholmod":
            from sksparse.cholmod import analyze

            full = self.pattern.full_matrix(data)
            if self._state is None:
                self._state = analyze(full)
            self._state.cholesky_inplace(full)
        elif b == "cholespy":
            from cholespy import CholeskySolverD, MatrixType

            full = self.pattern.full_matrix(data)
            self._state = CholeskySolverD(self.pattern.n, full.indptr.astype(np.int32),
                                          full.indices.astype(np.int32), full.data, MatrixType.CSC)
        else:
            from scipy.sparse.linalg import splu

            self._state = splu(self.pattern.full_matrix(data), permc_spec="MMD_AT_PLUS_A",
                               diag_pivot_thresh=0.0, options={"SymmetricMode": True})
        self.factorizations += 1

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        if self._state is None:
            raise RuntimeError("PatternSolver.solve: call factor() first")
        rhs = np.ascontiguousarray(rhs, np.float64)
        b = self.backend
        if b == "qdldl":
            if rhs.ndim == 1:
                return self._state.solve(rhs)
            return np.stack([self._state.solve(np.ascontiguousarray(rhs[:, k]))
                             for k in range(rhs.shape[1])], 1)
        if b == "cholmod":
            return self._state(rhs)
        if b == "cholespy":
            out = np.zeros_like(rhs)
            self._state.solve(rhs, out)
            return out
        return self._state.solve(rhs)
