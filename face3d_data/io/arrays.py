"""NumPy ``.npy`` / ``.npz`` files, written atomically and deterministically."""

from __future__ import annotations

import io as _io
import os
import zipfile

import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.atomic import atomic_write, write_buffers, write_bytes


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (``.npy``) atomically: the bytes of ``np.save``, written
    from the array's memory straight into the temporary file (no in-memory copy of the file).

    A contiguous plain numeric array (bool, int, uint, float, complex): its header, then its
    memory, with one ``os.write`` each (as ``tofile`` writes it, without its file-object overhead);
    anything else goes through ``np.lib.format.write_array``.
    """
    array = np.asanyarray(array)
    if (type(array) is np.ndarray and array.dtype.kind in "biufc" and array.dtype.names is None
            and array.dtype.subdtype is None and (array.flags.c_contiguous or array.flags.f_contiguous)):
        header = _io.BytesIO()
        # what write_array writes for these dtypes: format 1.0 (2.0/3.0 only for huge or non-latin-1 headers)
        np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
        memory = array if array.flags.c_contiguous else array.T  # a Fortran-order file holds the memory as is
        write_buffers(path, (header.getvalue(), memory.reshape(-1).view(np.uint8)))
        return
    with atomic_write(path, "wb") as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` file (no pickles); corrupt or missing files raise InputError."""
    path = os.fspath(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as exc:
        raise InputError(path, f"not a readable .npy file: {type(exc).__name__}: {exc}") from None


def encode_npz(arrays: dict) -> bytes:
    """The bytes of an ``.npz`` archive of ``arrays`` (``np.load`` reads it), deflated, with fixed
    member timestamps: the same arrays give the same bytes."""
    buffer = _io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = _io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def save_npz(path: str | os.PathLike, arrays: dict) -> None:
    """Write ``arrays`` to ``path`` (``.npz``, see :func:`encode_npz`) atomically."""
    write_bytes(path, encode_npz(arrays))
