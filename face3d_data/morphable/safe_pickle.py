"""A restricted unpickler for model files (3DDFA / 3DDFA_V2 ``.pkl``).

A pickle can run arbitrary code when loaded. Model pickles only need numpy arrays inside plain
containers, so :func:`load_pickle` admits exactly the globals numpy uses to rebuild arrays and
scalars (plus ``collections.OrderedDict``); anything else raises :class:`InputError` before it is
ever called.
"""

from __future__ import annotations

import os
import pickle

from face3d_data.errors import InputError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles rebuild byte strings with it (a pure function)
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}' (only numpy arrays "
                                     f"and plain containers are allowed in model pickles)")


def load_pickle(path: str | os.PathLike):
    """Load a pickle holding only numpy arrays, numbers, strings and dict/list/tuple containers.

    Python-2 pickles (``latin1`` byte strings) are supported.

    Raises:
        InputError: naming the file, for a missing/corrupt file or any disallowed global.
    """
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(f, encoding="latin1").load()
    except FileNotFoundError:
        raise InputError(path, "no such file") from None
    except pickle.UnpicklingError as exc:
        raise InputError(path, f"unsafe or corrupt pickle: {exc}") from None
    except Exception as exc:  # EOFError, ValueError, ... on a truncated file
        raise InputError(path, f"not a readable pickle ({type(exc).__name__}: {exc})") from None
