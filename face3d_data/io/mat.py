"""Matlab ``.mat`` files (v4–v7.2, as written by scipy and 300W-LP) with schema validation.

``read_mat`` checks required fields, their sizes and finiteness, and raises
:class:`~face3d_data.errors.InputError` naming the file and the field, so that a bad label file is
one clear row in ``failures.csv`` instead of a numpy traceback later on.

``write_mat`` writes deterministically: scipy stamps the creation time into the 116-byte text
header; we write a fixed header instead, so re-running a stage gives byte-identical files.
"""

from __future__ import annotations

import io as _io
import os
from typing import Mapping, Sequence

import numpy as np
import scipy.io

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_bytes

_HEADER = b"MATLAB 5.0 MAT-file, written by face3d-data"

# One field's expected shape after ``np.squeeze``: ints must match, ``None`` matches any size.
# Example: {"Pose_Para": (7,), "Shape_Para": (None,), "pt2d": (2, None)}.
Schema = Mapping[str, Sequence[int | None]]


def read_mat(path: str | os.PathLike, required: Schema | None = None,
             finite: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read a ``.mat`` file and validate it.

    Args:
        path: the file.
        required: fields that must be present, each with its expected squeezed shape
            (``None`` entries match any size). Required numeric fields must also be finite.
        finite: further fields that, when present, must be finite.

    Returns:
        ``{name: ndarray}`` as stored (not squeezed), without scipy's ``__header__``-style keys.

    Raises:
        InputError: missing, empty, truncated or corrupt file; missing field; wrong shape; NaN/inf.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "label file not found")
    if os.path.getsize(path) == 0:
        raise InputError(path, ".mat file is empty (0 bytes)")
    try:
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        raise InputError(path, "Matlab v7.3 (HDF5) .mat files are not supported; re-save with "
                               "`save(..., '-v7')` in Matlab") from None
    except Exception as exc:  # scipy raises many different errors for truncated/corrupt files
        raise InputError(path, f"not a readable .mat file (truncated or corrupt): "
                               f"{type(exc).__name__}: {exc}") from None
    data = {k: v for k, v in raw.items() if not k.startswith("__")}
    for name, shape in (required or {}).items():
        if name not in data:
            raise InputError(path, f"missing field '{name}' (fields present: "
                                   f"{', '.join(sorted(data)) or 'none'})")
        check_field(path, name, data[name], shape)
    for name in finite or ():
        if name in data:
            check_field(path, name, data[name], None)
    return data


def check_field(path: str, name: str, value: np.ndarray, shape: Sequence[int | None] | None) -> None:
    """Validate one field's squeezed shape and finiteness; raise InputError naming file and field."""
    value = np.asarray(value)
    if shape is not None:
        got = np.squeeze(value).shape if value.size != 1 else (1,) * max(1, len(shape))
        ok = len(got) == len(shape) and all(e is None or e == g for e, g in zip(shape, got))
        if not ok:
            want = "×".join("any" if e is None else str(e) for e in shape)
            raise InputError(path, f"field '{name}' has shape {value.shape}, expected {want}")
    if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise InputError(path, f"field '{name}' contains {bad} NaN/inf value(s)")
    if value.dtype.kind not in "fciub":
        raise InputError(path, f"field '{name}' is not numeric (dtype {value.dtype})")


def encode_mat(fields: Mapping[str, object]) -> bytes:
    """Return the bytes of a v5 ``.mat`` file holding ``fields`` (deterministic header)."""
    buf = _io.BytesIO()
    scipy.io.savemat(buf, dict(fields), do_compression=False, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = _HEADER.ljust(116, b" ")
    return bytes(data)


def write_mat(path: str | os.PathLike, fields: Mapping[str, object]) -> None:
    """Write ``fields`` to a ``.mat`` file atomically and deterministically."""
    write_bytes(path, encode_mat(fields))
