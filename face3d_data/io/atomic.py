"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A reader (or a resumed run) therefore sees either the previous complete file or the new complete
file, never a half-written one, even if the process is killed with SIGKILL mid-write. Temporary
files are named ``.<name>.tmp-<random>`` so that they are hidden and never match output patterns.

Files are not fsync'ed: data handed to the OS survives the writing process being killed, which is
what resuming needs, and an fsync per file (~2 ms) would dominate small-file stages. Set
``FACE3D_FSYNC=1`` to also survive power loss.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator

_FSYNC = os.environ.get("FACE3D_FSYNC", "") not in ("", "0")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``path`` only when the block succeeds.

    Args:
        path: destination file; its folder is created if needed.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Yields:
        The open temporary file. On an exception it is deleted and ``path`` is untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', got {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=folder)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8", "newline": "\n"} if mode == "w" else {})) as f:
            yield f
            if _FSYNC:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (``\\n`` line endings)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def is_temporary(name: str) -> bool:
    """True for the temporary names :func:`atomic_write` uses (left behind only by a crash)."""
    return name.startswith(".") and ".tmp-" in name
