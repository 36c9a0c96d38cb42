"""Argument checks shared by the render wrappers: convert once, fail with a named argument.

Every array that reaches the Cython kernels passes through here, so the kernels can trust dtype,
C order and shapes. Triangle index ranges of int32 C-contiguous triangles are checked by the
kernels as they draw (no separate pass over the mesh); they return the first bad triangle and
:func:`raise_bad_triangle` turns it into the same ``ValueError`` as :func:`as_triangles`. Costs
are proportional to what is not already right: an input of the right dtype and layout is used as
is, an ``out=`` buffer is checked by shape, dtype and layout only.
"""

from __future__ import annotations

import numpy as np

from face3d_data.cores import available_cores


def as_vertices(vertices, name: str = "vertices") -> np.ndarray:
    """(N, 3) float32 C-contiguous copy-or-view; NaN/inf allowed (such triangles draw nothing)."""
    if type(vertices) is np.ndarray and vertices.dtype == np.float32 and vertices.ndim == 2 \
            and vertices.shape[1] == 3 and vertices.flags.c_contiguous:
        return vertices   # already what the kernels take: no conversion, no further checks
    arr = np.asarray(vertices)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3), got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_triangles(triangles, n_vertices: int, name: str = "triangles") -> np.ndarray:
    """(M, 3) int32 C-contiguous; every index in [0, n_vertices) or ValueError naming the index."""
    arr = np.asarray(triangles)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (M, 3), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) \
                or np.any(arr != np.round(arr)):
            raise ValueError(f"{name}: expected integer vertex indices, got dtype {arr.dtype}")
    if arr.size and (arr.min() < 0 or arr.max() >= n_vertices):
        bad = (arr < 0) | (arr >= n_vertices)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ValueError(f"{name}[{row}, {col}] = {arr[row, col]} is out of range for "
                             f"{n_vertices} vertices")
    return np.ascontiguousarray(arr, dtype=np.int32)


def as_kernel_triangles(triangles, n_vertices: int, name: str = "triangles") -> np.ndarray:
    """(M, 3) int32 C-contiguous for the kernels, which check the index range themselves.

    An int32 C-contiguous (M, 3) array is returned as is, with no pass over it (pass the result to
    :func:`raise_bad_triangle` when a kernel reports a bad triangle). Anything else goes through
    :func:`as_triangles` (converted and fully checked: a value outside int32 cannot be converted).
    """
    arr = triangles if isinstance(triangles, np.ndarray) else np.asarray(triangles)
    if arr.dtype == np.int32 and arr.ndim == 2 and arr.shape[1] == 3 and arr.flags.c_contiguous:
        return arr
    return as_triangles(arr, n_vertices, name)


def raise_bad_triangle(triangles: np.ndarray, row: int, n_vertices: int, name: str = "triangles"):
    """Raise the :func:`as_triangles` error for triangle ``row``, reported bad by a kernel."""
    for col in range(3):
        value = triangles[row, col]
        if not 0 <= value < n_vertices:
            raise ValueError(f"{name}[{row}, {col}] = {value} is out of range for {n_vertices} vertices")
    raise AssertionError(f"{name}[{row}] was reported out of range but is not")  # pragma: no cover


def as_out(array, shape: tuple, dtype, name: str) -> np.ndarray:
    """An ``out=`` buffer: a writeable C-contiguous ndarray of exactly ``shape`` and ``dtype``
    (checked, never converted: the caller's array is the one written)."""
    dtype = np.dtype(dtype)
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array of shape {shape} and dtype "
                         f"{dtype.name}, got {type(array).__name__}")
    if array.shape != shape or array.dtype != dtype:
        raise ValueError(f"{name}: expected shape {shape} and dtype {dtype.name}, got "
                         f"{array.shape} {array.dtype}")
    if not array.flags.c_contiguous or not array.flags.writeable:
        raise ValueError(f"{name}: expected a writeable C-contiguous array")
    return array


def as_size(value, name: str) -> int:
    """A non-negative image dimension."""
    if type(value) is int and value >= 0:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    return int(value)


def as_attributes(attributes, n_vertices: int, name: str = "attributes") -> tuple[np.ndarray, bool]:
    """(N, C) float32 C-contiguous, plus whether the input was 1-D (N,) (then outputs are (H, W))."""
    if type(attributes) is np.ndarray and attributes.dtype == np.float32 and attributes.ndim == 2 \
            and attributes.shape[0] == n_vertices and attributes.flags.c_contiguous:
        return attributes, False
    arr = np.asarray(attributes)
    flat = arr.ndim == 1
    if flat:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (N, C) or (N,), got {np.shape(attributes)}")
    if arr.shape[0] != n_vertices:
        raise ValueError(f"{name}: has {arr.shape[0]} rows but the mesh has {n_vertices} vertices")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name}: expected a real-valued array, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32), flat


def as_threads(num_threads) -> int:
    """None -> every core this process may use; otherwise a positive integer."""
    if num_threads is None:
        return available_cores()
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads: expected a positive integer or None, got {num_threads!r}")
    return int(num_threads)
