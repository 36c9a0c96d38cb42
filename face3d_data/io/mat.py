"""Matlab ``.mat`` files (v4–v7.2, as written by scipy and 300W-LP) with schema validation.

``read_mat`` checks required fields, their sizes and finiteness, and raises
:class:`~face3d_data.errors.InputError` naming the file and the field, so that a bad label file is
one clear row in ``failures.csv`` instead of a numpy traceback later on.

``write_mat`` writes deterministically: scipy stamps the creation time into the 116-byte text
header; we write a fixed header instead, so re-running a stage gives byte-identical files.

Reading: little-endian v5 files whose every variable is a plain real numeric matrix (uncompressed
or zlib-compressed ``miMATRIX``, the layouts of 300W-LP, ``savemat`` and :func:`encode_mat`) are
parsed directly (~2.5x faster than ``scipy.io.loadmat`` for a 300W-LP label file), giving exactly
what ``loadmat(squeeze_me=False)`` gives: the stored element type's dtype, the stored dims,
Fortran-order writeable arrays. Any other file (structs, cells, strings, sparse, complex, v4, v7.3,
odd or damaged bytes) goes through scipy, so its result and its errors are scipy's; except a numeric
matrix whose data element has a type code scipy has no dtype for, on which loadmat crashes the
process: that is an InputError naming the file and the variable.
"""

from __future__ import annotations

import io as _io
import os
import struct
import sys
import zlib
from typing import Mapping, Sequence

import numpy as np

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
    try:
        size = os.stat(path).st_size
    except (OSError, ValueError):  # what os.path.exists treats as "does not exist"
        raise InputError(path, "label file not found") from None
    if size == 0:
        raise InputError(path, ".mat file is empty (0 bytes)")
    data = _read_plain_v5(path)
    if data is None:
        data = {k: v for k, v in _loadmat(path).items() if not k.startswith("__")}
    for name, shape in (required or {}).items():
        if name not in data:
            raise InputError(path, f"missing field '{name}' (fields present: "
                                   f"{', '.join(sorted(data)) or 'none'})")
        check_field(path, name, data[name], shape)
    for name in finite or ():
        if name in data:
            check_field(path, name, data[name], None)
    return data


# v5 element type (miINT8 ... miUINT64) -> the dtype loadmat gives a numeric array stored with it
_MI_DTYPES = {1: np.dtype("i1"), 2: np.dtype("u1"), 3: np.dtype("<i2"), 4: np.dtype("<u2"), 5: np.dtype("<i4"),
              6: np.dtype("<u4"), 7: np.dtype("<f4"), 9: np.dtype("<f8"), 12: np.dtype("<i8"), 13: np.dtype("<u8")}
# array flags of the direct path: a numeric class (mxDOUBLE_CLASS 6 ... mxUINT64_CLASS 15), maybe the
# logical and global bits (loadmat ignores both for numeric arrays); complex, sparse, ... are not
_NUMERIC_FLAGS = frozenset(c | b for c in range(6, 16) for b in (0, 1 << 9, 1 << 10, 3 << 9))
# element types scipy has a dtype for (the numeric ones above and miUTF8/16/32, read as uint arrays);
# on a numeric matrix whose data has any other type, loadmat (1.17) indexes its dtype table without a
# bounds check and the process dies (SIGSEGV: a NULL or stray pointer), so that is an InputError here
_SCIPY_DTYPES = frozenset({*_MI_DTYPES, 16, 17, 18})
_TAG = struct.Struct("<II")
# a miMATRIX tag, its array-flags element (tag, flags, nzmax) and the dimensions element's tag
_HEAD = struct.Struct("<IIIIIIII")


class _UnknownType(Exception):
    """A numeric matrix's data element has a type without a dtype (see ``_SCIPY_DTYPES``)."""


def _read_plain_v5(path: str) -> dict[str, np.ndarray] | None:
    """The variables of a little-endian v5 file of plain real numeric matrices, as loadmat returns
    them (without its ``__`` keys); None for any other file or any doubt (then scipy reads it).

    Raises:
        InputError: a numeric matrix whose data has an element type loadmat would crash on.
    """
    try:
        with open(path, "rb", buffering=0) as f:
            raw = bytearray(f.readall())
    except (OSError, ValueError):
        return None
    try:
        return _parse_plain_v5(raw)
    except _UnknownType as exc:
        name, mi_type = exc.args
        raise InputError(path, f"not a readable .mat file (truncated or corrupt): variable '{name}' has data "
                               f"of unknown element type {mi_type}") from None


def _parse_plain_v5(raw: bytearray) -> dict[str, np.ndarray] | None:
    """:func:`_read_plain_v5` on the bytes of a file (the arrays are views of ``raw``)."""
    n = len(raw)
    if sys.byteorder != "little" or n < 136 or raw[124:128] != b"\x00\x01IM" or 0 in raw[:4]:
        return None  # not v5 little-endian (v4 has a 0 in its first 4 bytes; v7.3 is version 2)
    data: dict[str, np.ndarray] = {}
    pos = 128
    while pos < n:
        if pos + 8 > n:
            return None
        mi_type, count = _TAG.unpack_from(raw, pos)
        end = pos + 8 + count
        if count == 0 or end > n:
            return None
        if mi_type == 14:  # miMATRIX; scipy skips any bytes after the data, up to ``end``
            var = _parse_matrix(raw, pos, end, False)
        elif mi_type == 15:  # miCOMPRESSED: a zlib stream of one miMATRIX element
            inflate = zlib.decompressobj()
            try:
                inner = bytearray(inflate.decompress(memoryview(raw)[pos + 8:end]))
            except zlib.error:
                return None
            if not inflate.eof or inflate.unused_data:
                return None
            var = _parse_matrix(inner, 0, len(inner), True)
        else:
            return None
        if var is None or var[0] in data:
            return None
        data[var[0]] = var[1]
        pos = end
    return data


def _data_tag(buf: bytearray, at: int) -> tuple[int, int, int, int] | None:
    """The data element whose tag starts at ``at``: (type, byte count, data start, next element).

    A small data element packs a 2-byte count and a 2-byte type into the first 4 bytes and holds
    at most 4 bytes of data in the tag's second half; None for one claiming more.
    """
    mi_type, count = _TAG.unpack_from(buf, at)
    if mi_type >> 16:
        mi_type, count = mi_type & 0xFFFF, mi_type >> 16
        return (mi_type, count, at + 4, at + 8) if count <= 4 else None
    return mi_type, count, at + 8, at + 8 + count + (-count % 8)


def _parse_matrix(buf: bytearray, pos: int, end: int, exact: bool) -> tuple[str, np.ndarray] | None:
    """(name, array) of the miMATRIX element at ``buf[pos:end]`` when it is a plain real numeric
    matrix with at least one element, else None. ``exact``: the data element (with its padding)
    must end the buffer, as scipy requires of a compressed element's contents."""
    if pos + 40 > end:
        return None
    tag, _, flags_tag, flags_count, flags, _, dims_type, dims_count = _HEAD.unpack_from(buf, pos)
    ndim, rem = divmod(dims_count, 4)
    if (tag != 14 or flags_tag != 6 or flags_count != 8 or flags not in _NUMERIC_FLAGS or dims_type not in (5, 6)
            or rem or not 2 <= ndim <= 32):
        return None
    at = pos + 32 + dims_count + (-dims_count % 8)  # the name element
    if at + 16 > end:
        return None
    dims = struct.unpack_from(f"<{ndim}i", buf, pos + 32)
    size = 1
    for d in dims:
        size *= d
        if d <= 0:
            return None  # empty arrays (and negative dims) are left to scipy
    tag = _data_tag(buf, at)
    if tag is None:
        return None
    name_type, count, start, at = tag
    if name_type != 1 or count == 0 or at + 8 > end:
        return None
    name = bytes(buf[start:start + count]).decode("latin1")
    tag = _data_tag(buf, at)
    if tag is None:
        return None
    mi_type, count, start, at = tag
    dtype = _MI_DTYPES.get(mi_type)
    if mi_type not in _SCIPY_DTYPES and start + count <= end:
        raise _UnknownType(name, mi_type)
    if dtype is None or count != size * dtype.itemsize or start + count > end or name.startswith("__") \
            or (exact and not start + count <= end <= at):
        return None
    return name, np.frombuffer(buf, dtype, size, start).reshape(dims[::-1]).T


def _loadmat(path: str) -> dict:
    """scipy.io.loadmat, its errors turned into InputError naming the file."""
    import scipy.io

    try:
        return scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except NotImplementedError:
        raise InputError(path, "Matlab v7.3 (HDF5) .mat files are not supported; re-save with "
                               "`save(..., '-v7')` in Matlab") from None
    except Exception as exc:  # scipy raises many different errors for truncated/corrupt files
        raise InputError(path, f"not a readable .mat file (truncated or corrupt): "
                               f"{type(exc).__name__}: {exc}") from None


def check_field(path: str, name: str, value: np.ndarray, shape: Sequence[int | None] | None) -> None:
    """Validate one field's squeezed shape and finiteness; raise InputError naming file and field."""
    value = np.asarray(value)
    if shape is not None:
        got = value.squeeze().shape if value.size != 1 else (1,) * max(1, len(shape))
        if len(got) != len(shape) or any(e is not None and e != g for e, g in zip(shape, got)):
            want = "×".join("any" if e is None else str(e) for e in shape)
            raise InputError(path, f"field '{name}' has shape {value.shape}, expected {want}")
    kind = value.dtype.kind
    if kind in "fc" and not np.isfinite(value).all():
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        raise InputError(path, f"field '{name}' contains {bad} NaN/inf value(s)")
    if kind not in "fciub":
        raise InputError(path, f"field '{name}' is not numeric (dtype {value.dtype})")


def encode_mat(fields: Mapping[str, object]) -> bytes:
    """Return the bytes of a v5 ``.mat`` file holding ``fields`` (deterministic header).

    The bytes are those of ``scipy.io.savemat(..., do_compression=False, oned_as="column")`` with
    the fixed header. Numeric and boolean arrays and scalars are written directly (about 20x
    faster than savemat for a 300W-LP label file); anything else (strings, structs, cells,
    complex, float16, ...) goes through scipy.
    """
    data = _encode_numeric(fields)
    if data is not None:
        return data
    import scipy.io

    buf = _io.BytesIO()
    scipy.io.savemat(buf, dict(fields), do_compression=False, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = _HEADER.ljust(116, b" ")
    return bytes(data)


# numpy dtype (native little-endian) -> (mxClass, miType) of a v5 numeric array, as scipy writes it
_V5_TYPES = {"f8": (6, 9), "f4": (7, 7), "i1": (8, 1), "u1": (9, 2), "i2": (10, 3), "u2": (11, 4),
             "i4": (12, 5), "u4": (13, 6), "i8": (14, 12), "u8": (15, 13), "b1": (9, 2)}
_LOGICAL = 2 << 8  # the array-flags bit scipy sets for a bool array (stored as uint8)


def _element(mi_type: int, payload: bytes) -> bytes:
    """A v5 data element: the 4-byte small form for <= 4 bytes, else an 8-byte tag, padded to 8."""
    n = len(payload)
    if n <= 4:
        return struct.pack("<I", (n << 16) | mi_type) + payload.ljust(4, b"\0")
    return struct.pack("<II", mi_type, n) + payload + b"\0" * (-n % 8)


def _encode_numeric(fields: Mapping[str, object]) -> bytes | None:
    """The v5 bytes of ``fields`` when every value is a plain numeric/bool array or scalar with a
    plain name; None otherwise (then scipy writes the file)."""
    if sys.byteorder != "little" or not isinstance(fields, Mapping):
        return None
    parts = [_HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM"]
    for name, value in fields.items():
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii() \
                or name.startswith("_") or len(name) > 63:
            return None
        if type(value) is np.ndarray:
            arr = value
        elif isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            arr = np.asarray(value)
        else:
            return None
        code = arr.dtype.str
        if code[0] not in "<|" or code[1:] not in _V5_TYPES or arr.size == 0 or arr.dtype.fields is not None:
            return None
        mx_class, mi_type = _V5_TYPES[code[1:]]
        dims = arr.shape if arr.ndim >= 2 else (arr.size, 1)
        if any(d >= 2 ** 31 for d in dims):
            return None
        body = b"".join([
            struct.pack("<IIII", 6, 8, mx_class | (_LOGICAL if code[1:] == "b1" else 0), 0),
            _element(5, struct.pack(f"<{len(dims)}i", *dims)),
            _element(1, name.encode("ascii")),
            _element(mi_type, arr.tobytes(order="F")),
        ])
        parts.append(struct.pack("<II", 14, len(body)) + body)
    return b"".join(parts)


def write_mat(path: str | os.PathLike, fields: Mapping[str, object]) -> None:
    """Write ``fields`` to a ``.mat`` file atomically and deterministically."""
    write_bytes(path, encode_mat(fields))
