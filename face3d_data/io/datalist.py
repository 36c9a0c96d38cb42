"""Datalists: the text files training code reads to find its samples.

- PRNet style: one sample per line, ``image label`` separated by a space
  (``datalist/posmap_train.txt``).
- Deep3DFaceRecon style: three parallel files ``images.txt``, ``landmarks.txt``, ``masks.txt``,
  one path per line (``datalist/<mode>/``).

Paths are written relative to a *root* folder (forward slashes, so lists move between machines
and operating systems) and resolved against the same root on read. Paths may not contain spaces
in PRNet lists (its readers split on whitespace); writing one raises ``ValueError``.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_text


def relative_path(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` with forward slashes."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")


def write_datalist(path: str | os.PathLike, rows: Iterable[Sequence[str | os.PathLike]],
                   root: str | os.PathLike) -> int:
    """Write rows of paths (each row one line, columns separated by a space), relative to ``root``.

    Returns:
        The number of lines written.
    """
    lines = []
    for row in rows:
        cols = [relative_path(p, root) for p in row]
        for c in cols:
            if any(ch.isspace() for ch in c):
                raise ValueError(f"datalist paths cannot contain whitespace: {c!r}")
        lines.append(" ".join(cols))
    write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_datalist(path: str | os.PathLike, root: str | os.PathLike,
                  columns: int | None = None) -> list[tuple[str, ...]]:
    """Read a datalist; each row's paths are joined to ``root``.

    Args:
        columns: expected number of paths per line (``None``: any, but the same on every line).

    Raises:
        InputError: missing file, or a line with the wrong number of columns.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        raise InputError(path, "datalist not found") from None
    rows = []
    for number, cols in enumerate(lines, 1):
        want = columns if columns is not None else len(lines[0])
        if len(cols) != want:
            raise InputError(path, f"line {number}: expected {want} path(s), found {len(cols)}")
        rows.append(tuple(os.path.join(os.fspath(root), c) for c in cols))
    return rows
