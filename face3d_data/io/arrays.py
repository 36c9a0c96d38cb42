"""NumPy ``.npy`` files, written atomically."""

from __future__ import annotations

import io as _io
import os

import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_bytes


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (``.npy``) atomically."""
    buf = _io.BytesIO()
    np.save(buf, np.asarray(array), allow_pickle=False)
    write_bytes(path, buf.getvalue())


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` file (no pickles); corrupt or missing files raise InputError."""
    path = os.fspath(path)
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Exception as exc:
        raise InputError(path, f"not a readable .npy file: {type(exc).__name__}: {exc}") from None
