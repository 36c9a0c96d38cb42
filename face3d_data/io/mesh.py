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
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
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


_PLY_TYPES = {"char": "b", "int8": "b", "uchar": "B", "uint8": "B", "short": "h", "int16": "h",
              "ushort": "H", "uint16": "H", "int": "i", "int32": "i", "uint": "I", "uint32": "I",
              "float": "f", "float32": "f", "double": "d", "float64": "d"}


def _read_ply(path: str) -> Mesh:
    with open(path, "rb") as f:
        data = f.read()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise InputError(path, "not a PLY file (missing 'ply' magic or 'end_header')")
    header = data[:end].decode("ascii").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt = next((l.split()[1] for l in header if l.startswith("format")), None)
    elements: list[tuple[str, int, list]] = []
    for line in header:
        p = line.split()
        if p and p[0] == "element":
            elements.append((p[1], int(p[2]), []))
        elif p and p[0] == "property":
            elements[-1][2].append(p[1:])
    if fmt == "ascii":
        values = iter(body.decode("ascii").split())
        read = lambda t: float(next(values))  # noqa: E731
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = [0]

        def read(t):
            code = order + _PLY_TYPES[t]
            value = struct.unpack_from(code, body, offset[0])[0]
            offset[0] += struct.calcsize(code)
            return value
    else:
        raise InputError(path, f"unsupported PLY format {fmt!r}")
    table: dict[str, dict[str, list]] = {}
    for name, count, props in elements:
        cols: dict[str, list] = {p[-1]: [] for p in props}
        for _ in range(count):
            for p in props:
                if p[0] == "list":
                    n = int(read(p[1]))
                    cols[p[-1]].append([int(read(p[2])) for _ in range(n)])
                else:
                    cols[p[-1]].append(read(p[0]))
        table[name] = cols
    vert = table.get("vertex", {})
    if not all(k in vert for k in "xyz"):
        raise InputError(path, "PLY has no vertex x/y/z properties")
    vertices = np.stack([np.asarray(vert[k], np.float32) for k in "xyz"], axis=1)
    faces = table.get("face", {})
    lists = faces.get("vertex_indices", faces.get("vertex_index", []))
    tris = [t for poly in lists for t in _fan(poly)]
    mesh = Mesh(vertices, np.asarray(tris, np.int32).reshape(-1, 3))
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
