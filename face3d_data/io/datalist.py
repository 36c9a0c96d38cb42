"""Datalists: the text files training code reads to find its samples.

- PRNet style: one sample per line, ``image label`` separated by a space
  (``datalist/posmap_train.txt``).
- Deep3DFaceRecon style: three parallel files ``images.txt``, ``landmarks.txt``, ``masks.txt``,
  one path per line (``datalist/<mode>/``).

Paths are written relative to a *root* folder (forward slashes, so lists move between machines
and operating systems) and resolved against the same root on read.

Escaping (percent-encoding), so that any file name survives a whitespace-separated line:
on write, ``%`` becomes ``%25``, every whitespace character becomes ``%XX`` for each byte of its
UTF-8 encoding (a space is ``%20``, a tab ``%09``, U+3000 ``%E3%80%80``), and every byte of a
file name that is not valid UTF-8 (a name Python decoded with ``surrogateescape``, as
``os.listdir`` does) becomes ``%XX`` of that byte. Every other character is written as is (UTF-8).
On read, :func:`read_datalist` decodes ``%XX`` sequences back to the original name. Read datalists
with :func:`read_datalist`, never by splitting lines yourself. A list whose names hold none of
these characters is byte-identical to an unescaped one.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_text


def relative_path(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to ``root`` with forward slashes."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root)).replace(os.sep, "/")


def _escape_char(ch: str) -> str:
    if ch == "%":
        return "%25"
    if ch.isspace() or "\udc80" <= ch <= "\udcff":
        return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return ch


def escape_path(path: str) -> str:
    """Percent-encode ``%``, whitespace and non-UTF-8 bytes of a datalist path (see module doc)."""
    if not any(ch == "%" or ch.isspace() or "\udc80" <= ch <= "\udcff" for ch in path):
        return path
    return "".join(_escape_char(ch) for ch in path)


def unescape_path(text: str) -> str:
    """Inverse of :func:`escape_path` (invalid UTF-8 comes back as surrogate escapes)."""
    if "%" not in text:
        return text
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and _is_hex(text[i + 1:i + 3]):
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _is_hex(pair: str) -> bool:
    return len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair)


def write_datalist(path: str | os.PathLike, rows: Iterable[Sequence[str | os.PathLike]],
                   root: str | os.PathLike) -> int:
    """Write rows of paths (each row one line, columns separated by a space), relative to ``root``,
    percent-encoded (see the module docstring).

    Returns:
        The number of lines written.
    """
    lines = []
    for row in rows:
        lines.append(" ".join(escape_path(relative_path(p, root)) for p in row))
    text = "".join(line + "\n" for line in lines)
    write_text(path, text)
    return len(lines)


def read_datalist(path: str | os.PathLike, root: str | os.PathLike,
                  columns: int | None = None) -> list[tuple[str, ...]]:
    """Read a datalist; each row's paths are decoded (percent-encoding) and joined to ``root``.

    Args:
        columns: expected number of paths per line (``None``: any, but the same on every line).

    Raises:
        InputError: missing file, undecodable text, or a line with the wrong number of columns.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.split() for line in f if line.strip()]
    except FileNotFoundError:
        raise InputError(path, "datalist not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    rows = []
    for number, cols in enumerate(lines, 1):
        want = columns if columns is not None else len(lines[0])
        if len(cols) != want:
            raise InputError(path, f"line {number}: expected {want} path(s), found {len(cols)}")
        rows.append(tuple(os.path.join(os.fspath(root), unescape_path(c)) for c in cols))
    return rows
