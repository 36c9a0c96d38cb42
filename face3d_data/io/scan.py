"""3D scans and their landmarks: ``.obj`` (+ ``.mtl`` + texture), ``.ply``, RGB-D frames.

A scan in memory is :class:`Scan`: ``vertices (V, 3) float64`` in the scan's own frame and unit,
``triangles (F, 3) int32``, optional ``colors (V, 3) float32`` in [0, 1], optional ``uv (V, 2)
float32`` (u right, v up) with its ``texture (H, W, 3) uint8``.

Loaders may change the vertex count: an ``.obj`` vertex used with several texture coordinates
(a UV seam) is split into one vertex per (position, uv) pair, and vertices no face uses are
dropped. That is why scan landmarks are 3D points (:func:`read_scan_landmarks`), never vertex
indices.

- ``.obj``: ``v`` (optionally ``x y z r g b``), ``vt``, ``f`` with ``v``, ``v/vt``, ``v//vn`` or
  ``v/vt/vn`` corners (polygons fan-triangulated); ``mtllib`` + ``usemtl`` -> the first ``map_Kd``
  texture found.
- ``.ply``: ascii or binary (little/big endian), ``x y z`` plus ``red green blue`` (uchar or float)
  vertex colours, triangle or polygon faces.
- RGB-D frame ``<stem>_depth.png`` (16-bit) + ``<stem>_intrinsics.json`` (``fx fy cx cy`` in
  pixels, ``depth_scale`` = metres per depth unit, default 0.001) + optional colour image
  ``<stem>_color.*`` / ``<stem>_rgb.*``: back-projected into the camera frame (x right, y down, z
  forward; mm), the pixel grid triangulated, triangles across depth jumps dropped
  (:func:`mesh_depth`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from face3d_data.errors import InputError
from face3d_data.io.mesh import read_ply_arrays

SCAN_EXTENSIONS = (".obj", ".ply")
LANDMARK_SUFFIXES = ("_landmarks.npy", "_landmarks.ljson", "_landmarks.txt")


@dataclasses.dataclass
class Scan:
    """A scan (see module docstring for shapes, frames and units)."""

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray | None = None
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    path: str = ""
    unit: str | None = None   # known unit (RGB-D frames are written in mm), else None


def read_scan(path: str | os.PathLike) -> Scan:
    """Read a scan: ``.obj``, ``.ply`` or an RGB-D frame given by its ``<stem>_depth.png``.

    Raises:
        InputError: missing/malformed file, no triangles, out-of-range indices, non-finite values.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(path, "scan file not found")
    low = path.lower()
    try:
        if low.endswith(".obj"):
            scan = _read_obj(path)
        elif low.endswith(".ply"):
            scan = _read_ply(path)
        elif low.endswith("_depth.png"):
            scan = read_rgbd(path)
        else:
            raise InputError(path, "unknown scan type (use .obj, .ply or <stem>_depth.png)")
    except InputError:
        raise
    except (ValueError, IndexError, KeyError, UnicodeDecodeError, OSError) as exc:
        raise InputError(path, f"malformed scan: {exc}") from None
    _validate(path, scan)
    return scan


def _validate(path: str, scan: Scan) -> None:
    v, t = scan.vertices, scan.triangles
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(path, f"scan has no usable vertices (shape {v.shape})")
    if t.ndim != 2 or t.shape[1] != 3 or len(t) == 0:
        raise InputError(path, "scan has no triangles (a point cloud cannot be registered)")
    if not np.all(np.isfinite(v)):
        raise InputError(path, "scan vertices contain NaN/inf")
    if t.min() < 0 or t.max() >= len(v):
        raise InputError(path, f"triangle index out of range [0, {len(v)})")


def _compact(vertices, triangles, *extra):
    """Drop vertices no triangle uses; returns (vertices, triangles, *extra) reindexed."""
    used = np.unique(triangles)
    if len(used) == len(vertices):
        return (vertices, triangles, *extra)
    remap = -np.ones(len(vertices), np.int64)
    remap[used] = np.arange(len(used))
    return (vertices[used], remap[triangles].astype(np.int32),
            *[None if e is None else e[used] for e in extra])


# ---------------------------------------------------------------------------------------- OBJ
def _read_obj(path: str) -> Scan:
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    v_rows, vt_rows, corners, mtllibs = [], [], [], []
    for line in lines:
        if line.startswith("v "):
            v_rows.append(line[2:])
        elif line.startswith("vt "):
            vt_rows.append(line[3:])
        elif line.startswith("f "):
            corners.append(line[2:].split())
        elif line.startswith("mtllib "):
            mtllibs.append(line[7:].strip())
    if not v_rows:
        raise InputError(path, "OBJ has no vertices")
    vals = [np.array(r.split(), np.float64) for r in v_rows]
    width = min(len(a) for a in vals)
    vdata = np.stack([a[:6] if width >= 6 else a[:3] for a in vals])
    verts = vdata[:, :3]
    colors = vdata[:, 3:6].astype(np.float32) if width >= 6 else None
    if colors is not None and colors.max() > 1.0:
        colors = colors / 255.0
    uvs = np.array([r.split()[:2] for r in vt_rows], np.float64).reshape(-1, 2)
    nv, nt = len(verts), len(uvs)
    tri_v, tri_t = [], []
    for poly in corners:
        parts = [c.split("/") for c in poly]
        vi = [int(p[0]) for p in parts]
        vi = [i - 1 if i > 0 else nv + i for i in vi]
        ti = [int(p[1]) if len(p) > 1 and p[1] else 0 for p in parts]
        ti = [i - 1 if i > 0 else (nt + i if i < 0 else -1) for i in ti]
        for k in range(1, len(vi) - 1):
            tri_v.append((vi[0], vi[k], vi[k + 1]))
            tri_t.append((ti[0], ti[k], ti[k + 1]))
    tv = np.asarray(tri_v, np.int64).reshape(-1, 3)
    tt = np.asarray(tri_t, np.int64).reshape(-1, 3)
    if len(tv) and (tv.min() < 0 or tv.max() >= nv):
        raise InputError(path, f"face vertex index out of range [1, {nv}]")
    texture = None
    uv = None
    if nt and len(tt) and tt.min() >= 0:
        if tt.max() >= nt:
            raise InputError(path, f"face texture index out of range [1, {nt}]")
        # one vertex per (position, uv) pair: UV seams are split
        pairs = tv.ravel() * nt + tt.ravel()
        uniq, inv = np.unique(pairs, return_inverse=True)
        pos, tex = uniq // nt, uniq % nt
        verts, uv = verts[pos], uvs[tex].astype(np.float32)
        colors = None if colors is None else colors[pos]
        tv = inv.reshape(-1, 3)
        texture = _obj_texture(path, mtllibs)
    verts, tv, colors, uv = _compact(verts, tv.astype(np.int32), colors, uv)
    return Scan(verts.astype(np.float64), tv.astype(np.int32), colors, uv, texture, path)


def _obj_texture(path: str, mtllibs: list[str]):
    from face3d_data.io.images import read_image

    base = os.path.dirname(path)
    for lib in mtllibs:
        mtl = os.path.join(base, lib)
        if not os.path.isfile(mtl):
            raise InputError(mtl, "material library named by the OBJ not found")
        with open(mtl, encoding="utf-8", errors="replace") as f:
            for line in f:
                p = line.strip().split(None, 1)
                if len(p) == 2 and p[0] == "map_Kd":
                    name = p[1].split()[-1]
                    tex = os.path.join(os.path.dirname(mtl), name)
                    if not os.path.isfile(tex):
                        raise InputError(tex, "texture named by the material library not found")
                    return read_image(tex)
    return None


# ---------------------------------------------------------------------------------------- PLY
def _read_ply(path: str) -> Scan:
    return _ply_scan(path, *read_ply_arrays(path))


def _ply_scan(path, vert, faces) -> Scan:
    if vert is None:
        raise InputError(path, "PLY has no vertex element")
    names = tuple(vert)
    if not all(k in names for k in "xyz"):
        raise InputError(path, "PLY has no vertex x/y/z properties")
    v = np.stack([np.asarray(vert[k], np.float64) for k in "xyz"], 1)
    colors = None
    colour_names = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))
    cn = next(((a, b, c) for a, b, c in colour_names if a in names), None)
    if cn is not None:
        raw = np.stack([np.asarray(vert[k]) for k in cn], 1)
        c = raw.astype(np.float32)
        colors = c / 255.0 if raw.dtype.kind in "iu" or c.max() > 1.0 else c
    if faces is None or len(faces) == 0:
        raise InputError(path, "scan has no triangles (a point cloud cannot be registered)")
    t = np.asarray(faces, np.int64)
    if t.min() < 0 or t.max() >= len(v):
        raise InputError(path, f"triangle index out of range [0, {len(v)})")
    v, t, colors = _compact(v, t.astype(np.int32), colors)
    return Scan(v, t.astype(np.int32), None if colors is None else colors.astype(np.float32), None, None, path)


# ---------------------------------------------------------------------------------------- RGB-D
def mesh_depth(depth_m: np.ndarray, fx: float, fy: float, cx: float, cy: float, *, color=None,
               stride: int = 1, max_jump: float = 0.05):
    """Back-project a depth image into a triangle mesh (camera frame, mm).

    Args:
        depth_m: (H, W) depth in metres along the optical axis, 0 / NaN = no data.
        fx, fy, cx, cy: pinhole intrinsics in pixels (0-based pixel centres).
        color: optional (H', W', 3) uint8 image of the same view (resampled if its size differs).
        stride: keep every ``stride``-th pixel in each direction.
        max_jump: drop triangles whose depth range exceeds ``max_jump`` × their mean depth.
    Returns:
        (vertices (V, 3) mm: x right, y down, z forward; triangles (F, 3) facing the camera;
        colors (V, 3) float32 or None).
    """
    d = np.asarray(depth_m, np.float64)[::stride, ::stride]
    h, w = d.shape
    vv, uu = np.mgrid[0:h, 0:w] * stride
    ok = np.isfinite(d) & (d > 0)
    z = np.where(ok, d, 0.0) * 1000.0
    x = (uu - cx) * z / fx
    y = (vv - cy) * z / fy
    idx = np.arange(h * w).reshape(h, w)
    a, b, c, e = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    # image y down, z forward: (a, c, b) turns counter-clockwise seen from the camera -> normal towards it
    tris = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, e], 1)])
    zf, okf = z.ravel(), ok.ravel()
    good = np.all(okf[tris], axis=1)
    zt = zf[tris]
    good &= (zt.max(1) - zt.min(1)) <= max_jump * np.maximum(zt.mean(1), 1e-9)
    tris = tris[good]
    verts = np.stack([x.ravel(), y.ravel(), zf], 1)
    cols = None
    if color is not None:
        col = np.asarray(color)
        ch, cw = col.shape[:2]
        sx, sy = cw / (w * stride), ch / (h * stride)
        ci = np.clip(np.round(vv * sy).astype(int), 0, ch - 1)
        cj = np.clip(np.round(uu * sx).astype(int), 0, cw - 1)
        cols = (col[ci, cj][..., :3].reshape(-1, 3) / 255.0).astype(np.float32)
    verts, tris, cols = _compact(verts, tris.astype(np.int32), cols)
    return verts, tris, cols


def rgbd_paths(depth_path: str) -> dict:
    """The files of an RGB-D frame given its ``<stem>_depth.png``: depth, intrinsics, colour (or None)."""
    stem = depth_path[: -len("_depth.png")]
    color = None
    for suffix in ("_color", "_rgb"):
        for ext in (".png", ".jpg", ".jpeg"):
            if os.path.isfile(stem + suffix + ext):
                color = stem + suffix + ext
                break
        if color:
            break
    return {"depth": depth_path, "intrinsics": stem + "_intrinsics.json", "color": color}


def read_rgbd(depth_path: str, stride: int = 1) -> Scan:
    """Read and mesh an RGB-D frame (see module docstring); vertices in mm, camera frame."""
    import cv2

    from face3d_data.io.images import read_image

    paths = rgbd_paths(depth_path)
    if not os.path.isfile(paths["intrinsics"]):
        raise InputError(paths["intrinsics"], "intrinsics JSON of the RGB-D frame not found")
    try:
        with open(paths["intrinsics"], encoding="utf-8") as f:
            intr = json.load(f)
        fx, fy, cx, cy = (float(intr[k]) for k in ("fx", "fy", "cx", "cy"))
        scale = float(intr.get("depth_scale", 0.001))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(paths["intrinsics"], f"expected fx, fy, cx, cy (and depth_scale): {exc}") from None
    raw = cv2.imread(depth_path, cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        raise InputError(depth_path, "expected a single-channel (16-bit) depth PNG")
    color = read_image(paths["color"]) if paths["color"] else None
    v, t, c = mesh_depth(raw.astype(np.float64) * scale, fx, fy, cx, cy, color=color, stride=stride,
                         max_jump=float(intr.get("max_jump", 0.05)))
    return Scan(v, t, c, None, None, depth_path, unit="mm")


# ---------------------------------------------------------------------------------------- landmarks
#: LJSON group labels (menpo's iBUG-68 labelling) in iBUG order
_LJSON_GROUPS = ("jaw", "left_eyebrow", "right_eyebrow", "nose", "left_eye", "right_eye", "mouth")


def read_scan_landmarks(path: str | os.PathLike) -> np.ndarray:
    """Read scan landmarks as (K, 3) float64 points in the scan's frame and unit.

    - ``.npy``: an (K, 3) array.
    - ``.txt``: one ``x y z`` row per point (spaces or commas; ``#`` comments).
    - ``.ljson``: menpo LJSON (``landmarks.points``); when its ``labels`` name the iBUG groups
      (jaw, left_eyebrow, right_eyebrow, nose, left_eye, right_eye, mouth) the points are put in
      iBUG order group by group, whatever order the file lists them in.

    Raises:
        InputError: missing/malformed file, not (K, 3), NaN/inf.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise InputError(path, "landmark file not found")
    low = path.lower()
    try:
        if low.endswith(".npy"):
            pts = np.load(path, allow_pickle=False)
        elif low.endswith((".ljson", ".json")):
            pts = _read_ljson(path)
        else:
            rows = []
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.split("#", 1)[0].strip()
                    if line:
                        rows.append([float(x) for x in re.split(r"[,\s]+", line) if x])
            pts = np.asarray(rows, np.float64)
    except (ValueError, TypeError, KeyError, json.JSONDecodeError) as exc:
        raise InputError(path, f"malformed landmark file: {exc}") from None
    pts = np.asarray(pts, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise InputError(path, f"expected (K, 3) landmark points, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise InputError(path, "landmarks contain NaN/inf values")
    return pts


def _read_ljson(path: str) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    pts = np.asarray(data["landmarks"]["points"], np.float64)
    labels = {lab.get("label"): lab.get("mask") for lab in data.get("labels", []) if isinstance(lab, dict)}
    if labels and all(g in labels for g in _LJSON_GROUPS[1:]):
        order = [i for g in _LJSON_GROUPS if g in labels for i in labels[g]]
        if len(order) == len(pts) and len(set(order)) == len(order):
            pts = pts[order]
    return pts


def find_scan_landmarks(scan_path: str) -> str | None:
    """The landmark file beside a scan (``<stem>_landmarks.npy|.ljson|.txt``), or None."""
    stem = scan_stem(scan_path)
    folder = os.path.dirname(scan_path)
    for suffix in LANDMARK_SUFFIXES:
        p = os.path.join(folder, stem + suffix)
        if os.path.isfile(p):
            return p
    return None


def scan_stem(path: str) -> str:
    """``<stem>`` of ``<stem>.obj|.ply`` or ``<stem>_depth.png``."""
    name = os.path.basename(path)
    if name.lower().endswith("_depth.png"):
        return name[: -len("_depth.png")]
    return os.path.splitext(name)[0]


def find_scans(folder: str) -> list[str]:
    """Scans directly in ``folder``, sorted: ``*.obj``, ``*.ply`` and ``*_depth.png`` RGB-D frames."""
    out = []
    for name in sorted(os.listdir(folder)):
        p = os.path.join(folder, name)
        if not os.path.isfile(p):
            continue
        low = name.lower()
        if low.endswith(SCAN_EXTENSIONS) or low.endswith("_depth.png"):
            out.append(p)
    return out
