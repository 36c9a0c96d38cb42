"""Atomic file writes: a temporary file in the destination folder, then ``os.replace``.

A reader (or a resumed run) therefore sees either the previous complete file or the new complete
file, never a half-written one, even if the process is killed with SIGKILL mid-write. Temporary
files are named ``.<name>.tmp-<host>-<pid>-<random>`` so that they are hidden, never match output
patterns, and tell who wrote them: :func:`stale_temporaries` finds those whose writer process
(on this host) no longer runs, left behind by a killed run. Finished files get the permissions of
an ordinary new file (``0666`` minus the process umask), not the ``0600`` of a temporary file.

Files are not fsync'ed: data handed to the OS survives the writing process being killed, which is
what resuming needs, and an fsync per file (~2 ms) would dominate small-file stages. Set
``FACE3D_FSYNC=1`` to also survive power loss.

:func:`write_bytes` / :func:`write_buffers` write with ``os.write`` on the descriptor (no Python
file object: ~12 µs less per file than :func:`atomic_write`, which the streaming and text writers
use).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import time
from typing import IO, Iterator

_FSYNC = os.environ.get("FACE3D_FSYNC", "") not in ("", "0")
_UMASK: int | None = None
_TMP = re.compile(r"^\..+\.tmp-(?:(?P<host>[A-Za-z0-9_-]{1,16})-(?P<pid>\d+)-)?[^.]*$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname().split(".")[0])[:16] or "host"


def _umask() -> int:
    """The process umask (read from /proc where possible; os.umask round trip otherwise)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Umask:"):
                        _UMASK = int(line.split()[1], 8)
                        break
        except (OSError, ValueError):
            pass
        if _UMASK is None:
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


# how mkstemp opens its files, less O_RDWR
_OPEN_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def _open_temporary(path: str) -> tuple[int, str]:
    """Create the temporary file for ``path`` (its folder too, if needed): (fd, temporary path).

    The name is ``.<name>.tmp-<host>-<pid>-<random>`` in the destination folder, created
    exclusively (``O_EXCL``) with mode 0600 like ``tempfile.mkstemp``, then given the finished
    file's permissions (``0666`` minus the umask).
    """
    folder = os.path.dirname(os.path.abspath(path))
    prefix = os.path.join(folder, f".{os.path.basename(path)}.tmp-{_host()}-{os.getpid()}-")
    for attempt in range(10000):  # tempfile.TMP_MAX
        tmp = prefix + os.urandom(6).hex()
        try:
            fd = os.open(tmp, _OPEN_FLAGS, 0o600)
        except FileExistsError:
            continue
        except (FileNotFoundError, NotADirectoryError):
            if attempt:
                raise
            os.makedirs(folder, exist_ok=True)  # raises what it raised before, e.g. for a file in the way
            try:
                fd = os.open(tmp, _OPEN_FLAGS, 0o600)
            except FileExistsError:
                continue
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_umask())
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "No usable temporary file name found")


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
    fd, tmp = _open_temporary(path)
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


def write_bytes(path: str | os.PathLike, data) -> None:
    """Write ``data`` (bytes or any C-contiguous buffer) to ``path`` atomically."""
    _write(os.fspath(path), (data,))


def write_buffers(path: str | os.PathLike, buffers) -> None:
    """Write the concatenation of ``buffers`` (bytes, memoryviews, C-contiguous arrays) to ``path``
    atomically: one ``write`` call per buffer in the usual case, no copy of the data.

    (Not one ``writev``: on Linux 6.x ext4, one 786 kB ``writev`` of a .npy header and array into a
    new file took ~40% more kernel time than the header's ``write`` then the array's, whose page
    cache pages are allocated differently; on tmpfs they cost the same.)
    """
    _write(os.fspath(path), tuple(buffers))


def _write(path: str, buffers: tuple) -> None:
    fd, tmp = _open_temporary(path)
    try:
        try:
            for data in buffers:
                _write_all(fd, data)
            if _FSYNC:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_all(fd: int, data) -> None:
    """Write every byte of ``data`` to ``fd``: one ``write``, more only after a short write (as a
    file object's ``write`` does)."""
    written = os.write(fd, data)  # a str is the TypeError file.write gave
    if written != (len(data) if type(data) is bytes else memoryview(data).nbytes):
        view = memoryview(data).cast("B")[written:]
        while view:
            view = view[os.write(fd, view):]


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (``\\n`` line endings)."""
    with atomic_write(path, "w") as f:
        f.write(text)


def is_temporary(name: str) -> bool:
    """True for the temporary names :func:`atomic_write` uses (left behind only by a crash)."""
    return bool(_TMP.match(name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temporaries(folder: str, max_age_s: float = 24 * 3600.0) -> list[str]:
    """Temporary files of :func:`atomic_write` under ``folder`` whose writer is gone: written on
    this host by a process that no longer runs, or (other hosts, old-style names) older than
    ``max_age_s``. Files of a writer still running (e.g. another shard) are never listed."""
    host, now, stale = _host(), time.time(), []
    for dirpath, _, files in os.walk(folder):
        for name in files:
            match = _TMP.match(name)
            if not match:
                continue
            path = os.path.join(dirpath, name)
            if match.group("host") == host:
                if not _alive(int(match.group("pid"))):
                    stale.append(path)
                continue
            try:
                if now - os.stat(path).st_mtime > max_age_s:
                    stale.append(path)
            except OSError:
                continue
    return sorted(stale)
