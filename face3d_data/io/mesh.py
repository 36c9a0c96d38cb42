"""Triangle meshes: Wavefront ``.obj`` (vertex colours, UVs) and ``.ply`` (ascii and binary).

A mesh in memory is :class:`Mesh`: ``vertices (N, 3) float32``, ``triangles (M, 3) int32``
(0-based), optional ``colors (N, 3) float32`` in [0, 1] and optional ``uv (N, 2) float32`` (one UV
per vertex, u right, v up). Polygons with more than three corners are fan-triangulated on read.
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.atomic import write_bytes, write_text


@dataclasses.dataclass
class Mesh:
    """A triangle mesh (see module docstring for shapes and conventions)."""

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None


def read_mesh(path: str | os.PathLike) -> Mesh:
    """Read an ``.obj`` or ``.ply`` file.

    Raises:
        InputError: missing file, unknown extension, malformed content, out-of-range indices,
        or non-finite vertices.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "mesh file not found")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".obj":
            mesh = _read_obj(path)
        elif ext == ".ply":
            mesh = _read_ply(path)
        else:
            raise InputError(path, f"unknown mesh extension {ext!r} (use .obj or .ply)")
    except InputError:
        raise
    except (ValueError, IndexError, KeyError, struct.error, UnicodeDecodeError) as exc:
        raise InputError(path, f"malformed mesh file: {exc}") from None
    _validate(path, mesh)
    return mesh


def write_mesh(path: str | os.PathLike, vertices: np.ndarray, triangles: np.ndarray,
               colors: np.ndarray | None = None, uv: np.ndarray | None = None,
               binary: bool = True) -> None:
    """Write a mesh atomically as ``.obj`` (text) or ``.ply`` (binary by default).

    Args:
        vertices: (N, 3) float; triangles: (M, 3) int, 0-based.
        colors: optional (N, 3) float in [0, 1]. uv: optional (N, 2) (``.obj`` only).
    """
    path = os.fspath(path)
    mesh = Mesh(np.asarray(vertices, np.float32), np.asarray(triangles, np.int32),
                None if colors is None else np.asarray(colors, np.float32),
                None if uv is None else np.asarray(uv, np.float32))
    _validate(path, mesh)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".obj":
        write_text(path, _obj_text(mesh))
    elif ext == ".ply":
        if mesh.uv is not None:
            raise ValueError("UVs are written to .obj only")
        write_bytes(path, _ply_bytes(mesh, binary))
    else:
        raise ValueError(f"unknown mesh extension {ext!r} (use .obj or .ply)")


def _validate(path: str, mesh: Mesh) -> None:
    v, t = mesh.vertices, mesh.triangles
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(path, f"vertices must be (N, 3), got {v.shape}")
    if t.size and (t.ndim != 2 or t.shape[1] != 3):
        raise InputError(path, f"triangles must be (M, 3), got {t.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError(path, "vertices contain NaN/inf")
    if t.size and (t.min() < 0 or t.max() >= len(v)):
        raise InputError(path, f"triangle index out of range [0, {len(v)}): "
                               f"min {int(t.min())}, max {int(t.max())}")
    for name, arr, width in (("colors", mesh.colors, 3), ("uv", mesh.uv, 2)):
        if arr is not None and arr.shape != (len(v), width):
            raise InputError(path, f"{name} must be ({len(v)}, {width}), got {arr.shape}")


def _fan(polygon: list[int]) -> list[tuple[int, int, int]]:
    return [(polygon[0], polygon[i], polygon[i + 1]) for i in range(1, len(polygon) - 1)]


def _read_obj(path: str) -> Mesh:
    verts, colors, uvs, tris, tri_uv = [], [], [], [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "v":
                verts.append([float(x) for x in parts[1:4]])
                if len(parts) >= 7:
                    colors.append([float(x) for x in parts[4:7]])
            elif parts[0] == "vt":
                uvs.append([float(x) for x in parts[1:3]])
            elif parts[0] == "f":
                corners = [p.split("/") for p in parts[1:]]
                vi = [_obj_index(c[0], len(verts)) for c in corners]
                tris += _fan(vi)
                if all(len(c) > 1 and c[1] for c in corners):
                    tri_uv += _fan([_obj_index(c[1], len(uvs)) for c in corners])
    vertices = np.asarray(verts, np.float32).reshape(-1, 3)
    triangles = np.asarray(tris, np.int32).reshape(-1, 3)
    mesh = Mesh(vertices, triangles)
    if colors:
        if len(colors) != len(verts):
            raise InputError(path, "some vertices have colours and some do not")
        mesh.colors = np.asarray(colors, np.float32)
    if uvs and len(tri_uv) == len(tris):
        # One UV per vertex: start from the vt list when it is per-vertex, then follow the faces.
        uv = np.asarray(uvs, np.float32) if len(uvs) == len(verts) else np.zeros((len(verts), 2), np.float32)
        uv = uv.copy()
        uv[triangles.ravel()] = np.asarray(uvs, np.float32)[np.asarray(tri_uv).ravel()]
        mesh.uv = uv
    return mesh


def _obj_index(token: str, count: int) -> int:
    i = int(token)
    return i - 1 if i > 0 else count + i


def _obj_text(mesh: Mesh) -> str:
    out = []
    for i, v in enumerate(mesh.vertices):
        c = "" if mesh.colors is None else " %.6f %.6f %.6f" % tuple(mesh.colors[i])
        out.append("v %.6f %.6f %.6f%s\n" % (v[0], v[1], v[2], c))
    if mesh.uv is not None:
        out += ["vt %.6f %.6f\n" % (u, v) for u, v in mesh.uv]
        out += ["f %d/%d %d/%d %d/%d\n" % (a + 1, a + 1, b + 1, b + 1, c + 1, c + 1)
                for a, b, c in mesh.triangles]
    else:
        out += ["f %d %d %d\n" % (a + 1, b + 1, c + 1) for a, b, c in mesh.triangles]
    return "".join(out)


_PLY_DTYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
               "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
               "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_arrays(path: str) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """The vertex properties and the faces of a PLY file (ascii, binary little or big endian).

    Returns:
        ``({property name: (N,) array in its stored dtype (float64 for ascii)}`` or None when the
        file has no vertex element, ``faces``: (M, 3) int64 0-based, polygons fanned into
        triangles, or None when it has no face element``)``.
    Raises:
        InputError: not a PLY file, or an unsupported format.
    """
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(path, "not a PLY file (missing 'ply' magic or 'end_header')")
    header = data[:end].decode("ascii", errors="replace").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt = next((ln.split()[1] for ln in header if ln.startswith("format")), "")
    elements = []
    for line in header:
        p = line.split()
        if p and p[0] == "element":
            elements.append([p[1], int(p[2]), []])
        elif p and p[0] == "property":
            elements[-1][2].append(p[1:])
    if fmt == "ascii":
        return _ply_ascii(body, elements)
    if fmt not in ("binary_little_endian", "binary_big_endian"):
        raise InputError(path, f"unsupported PLY format {fmt!r}")
    order = "<" if fmt == "binary_little_endian" else ">"
    offset = 0
    vert, faces = None, None
    for name, count, props in elements:
        if any(p[0] == "list" for p in props):
            if len(props) != 1:
                raise InputError(path, f"PLY element {name!r}: lists mixed with other properties")
            cnt_t, idx_t = _PLY_DTYPES[props[0][1]], _PLY_DTYPES[props[0][2]]
            # fast path: every polygon is a triangle
            rec = np.dtype([("n", order + cnt_t), ("i", order + idx_t, (3,))])
            arr = np.frombuffer(body, rec, count=count, offset=offset) if count else np.zeros(0, rec)
            if count and np.all(arr["n"] == 3):
                offset += rec.itemsize * count
                lists = arr["i"].astype(np.int64)
            else:
                lists, offset = _ply_lists(body, offset, count, order + cnt_t, order + idx_t)
            if name == "face":
                faces = lists
        else:
            rec = np.dtype([(p[1], order + _PLY_DTYPES[p[0]]) for p in props])
            arr = np.frombuffer(body, rec, count=count, offset=offset)
            offset += rec.itemsize * count
            if name == "vertex":
                vert = {n: arr[n] for n in rec.names}
    return vert, faces


def _ply_lists(body, offset, count, cnt_t, idx_t):
    cnt_dt, idx_dt = np.dtype(cnt_t), np.dtype(idx_t)
    tris = []
    for _ in range(count):
        n = int(np.frombuffer(body, cnt_dt, 1, offset)[0])
        offset += cnt_dt.itemsize
        poly = np.frombuffer(body, idx_dt, n, offset).astype(np.int64)
        offset += idx_dt.itemsize * n
        tris += [(poly[0], poly[k], poly[k + 1]) for k in range(1, n - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3), offset


def _ply_ascii(body, elements):
    lines = body.decode("ascii", errors="replace").splitlines()
    pos = 0
    vert, faces = None, None
    for name, count, props in elements:
        rows = lines[pos:pos + count]
        pos += count
        if any(p[0] == "list" for p in props):
            tris = []
            for r in rows:
                vals = [int(float(x)) for x in r.split()]
                n = vals[0]
                poly = vals[1:1 + n]
                tris += [(poly[0], poly[k], poly[k + 1]) for k in range(1, n - 1)]
            if name == "face":
                faces = np.asarray(tris, np.int64).reshape(-1, 3)
        else:
            arr = np.array([r.split() for r in rows], np.float64).reshape(count, len(props))
            if name == "vertex":
                vert = {p[1]: arr[:, i] for i, p in enumerate(props)}
    return vert, faces


def _read_ply(path: str) -> Mesh:
    vert, faces = read_ply_arrays(path)
    if vert is None or not all(k in vert for k in "xyz"):
        raise InputError(path, "PLY has no vertex x/y/z properties")
    vertices = np.stack([np.asarray(vert[k], np.float32) for k in "xyz"], axis=1)
    triangles = np.zeros((0, 3), np.int32) if faces is None else faces.astype(np.int32)
    mesh = Mesh(vertices, triangles)
    if all(k in vert for k in ("red", "green", "blue")):
        mesh.colors = np.stack([np.asarray(vert[k], np.float32) for k in ("red", "green", "blue")], 1) / 255.0
    return mesh


def _ply_bytes(mesh: Mesh, binary: bool) -> bytes:
    n, m = len(mesh.vertices), len(mesh.triangles)
    props = ["property float x", "property float y", "property float z"]
    if mesh.colors is not None:
        props += ["property uchar red", "property uchar green", "property uchar blue"]
    fmt = "binary_little_endian" if binary else "ascii"
    header = "\n".join(["ply", f"format {fmt} 1.0", f"element vertex {n}", *props,
                        f"element face {m}", "property list uchar int vertex_indices",
                        "end_header"]) + "\n"
    colors8 = None
    if mesh.colors is not None:
        colors8 = np.clip(np.round(mesh.colors * 255), 0, 255).astype(np.uint8)
    if not binary:
        rows = []
        for i, v in enumerate(mesh.vertices):
            c = "" if colors8 is None else " %d %d %d" % tuple(colors8[i])
            rows.append("%.6f %.6f %.6f%s" % (v[0], v[1], v[2], c))
        rows += ["3 %d %d %d" % tuple(t) for t in mesh.triangles]
        return (header + "\n".join(rows) + "\n").encode("ascii")
    vdtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors8 is not None:
        vdtype += [("r", "u1"), ("g", "u1"), ("b", "u1")]
    vrec = np.empty(n, dtype=vdtype)
    vrec["x"], vrec["y"], vrec["z"] = mesh.vertices.T
    if colors8 is not None:
        vrec["r"], vrec["g"], vrec["b"] = colors8.T
    frec = np.empty(m, dtype=[("n", "u1"), ("i", "<i4", (3,))])
    frec["n"] = 3
    frec["i"] = mesh.triangles
    return header.encode("ascii") + vrec.tobytes() + frec.tobytes()
