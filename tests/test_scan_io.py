"""Scan and landmark loaders: OBJ (+ mtl, texture, UV seams), PLY (ascii / binary, both endians), RGB-D."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from face3d_data.errors import InputError
from face3d_data.io import write_image, write_mesh
from face3d_data.io.scan import (
    find_scan_landmarks,
    find_scans,
    mesh_depth,
    read_scan,
    read_scan_landmarks,
    scan_stem,
)
from face3d_data.registration.surface import ClosestPoints


def _grid(n=4):
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    v = np.stack([xs.ravel(), ys.ravel(), 0.1 * xs.ravel() ** 2], 1)
    a = (np.arange(n - 1)[None, :] + n * np.arange(n - 1)[:, None]).ravel()
    tri = np.concatenate([np.stack([a, a + 1, a + n], 1), np.stack([a + 1, a + n + 1, a + n], 1)])
    return v, tri


def _write_obj_with_seam(path, v, tri, with_unused=True):
    """OBJ whose faces on the right half use a second set of texture coordinates (a UV seam)."""
    n = len(v)
    uv1 = v[:, :2] / v[:, :2].max()
    uv2 = uv1 * 0.5 + 0.5
    lines = ["mtllib face.mtl", "usemtl skin"]
    lines += ["v {:.6f} {:.6f} {:.6f}".format(*tuple(p)) for p in v]
    if with_unused:
        lines.append("v 100 100 100")                          # referenced by no face: dropped
    lines += ["vt {:.6f} {:.6f}".format(*tuple(t)) for t in uv1]
    lines += ["vt {:.6f} {:.6f}".format(*tuple(t)) for t in uv2]
    for f in tri:
        right = v[f, 0].mean() > v[:, 0].mean()
        off = n if right else 0
        lines.append("f " + " ".join(f"{i + 1}/{i + 1 + off}" for i in f))
    path.write_text("\n".join(lines) + "\n")
    (path.parent / "face.mtl").write_text("newmtl skin\nKd 1 1 1\nmap_Kd tex/skin.png\n")
    write_image(str(path.parent / "tex" / "skin.png"), np.full((8, 8, 3), 200, np.uint8))
    return uv1, uv2


def test_obj_with_texture_splits_seams_and_drops_unused_vertices(tmp_path):
    v, tri = _grid()
    p = tmp_path / "scan.obj"
    _write_obj_with_seam(p, v, tri)
    scan = read_scan(str(p))
    assert scan.texture is not None and scan.texture.shape == (8, 8, 3)
    assert scan.uv is not None and len(scan.uv) == len(scan.vertices)
    assert len(scan.vertices) > len(v)                          # seam vertices duplicated
    assert not np.any(np.all(scan.vertices == 100, axis=1))     # unused vertex dropped
    # every triangle keeps its corner positions
    np.testing.assert_allclose(np.sort(scan.vertices[scan.triangles].reshape(-1, 3), axis=0),
                               np.sort(v[tri].reshape(-1, 3), axis=0))


def test_landmarks_are_points_and_survive_vertex_renumbering(tmp_path):
    v, tri = _grid(5)
    p = tmp_path / "scan.obj"
    _write_obj_with_seam(p, v, tri)
    lm_idx = np.array([3, 12, 20])
    landmarks = v[lm_idx]                  # what a scan's landmark file holds: points
    scan = read_scan(str(p))
    d = ClosestPoints(scan.vertices, scan.triangles, "kdtree").query(landmarks)[3]
    np.testing.assert_allclose(d, 0.0, atol=1e-9)
    # the same landmarks as vertex indices would now point at other places
    assert np.any(np.linalg.norm(scan.vertices[lm_idx] - landmarks, axis=1) > 0.5)


def test_obj_vertex_colours_and_missing_texture(tmp_path):
    v, tri = _grid()
    col = np.linspace(0, 255, len(v) * 3).reshape(-1, 3)
    p = tmp_path / "c.obj"
    p.write_text("".join("v {:f} {:f} {:f} {:f} {:f} {:f}\n".format(*a, *c) for a, c in zip(v, col))
                 + "".join("f {} {} {}\n".format(*(f + 1)) for f in tri))
    scan = read_scan(str(p))
    np.testing.assert_allclose(scan.colors, col / 255.0, atol=1e-6)
    q = tmp_path / "t.obj"
    q.write_text("mtllib none.mtl\nv 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    with pytest.raises(InputError, match="none.mtl"):
        read_scan(str(q))


@pytest.mark.parametrize("binary", [True, False])
def test_ply_with_colours_round_trip(tmp_path, binary):
    v, tri = _grid()
    col = np.random.default_rng(0).integers(0, 256, (len(v), 3)) / 255.0
    p = tmp_path / "m.ply"
    write_mesh(str(p), v, tri, colors=col, binary=binary)
    scan = read_scan(str(p))
    np.testing.assert_allclose(scan.vertices, v, atol=1e-5)
    np.testing.assert_array_equal(scan.triangles, tri)
    np.testing.assert_allclose(scan.colors, col, atol=1e-6)


def test_ply_big_endian_with_quads(tmp_path):
    v = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [2, 0, 0]], np.float64)
    header = (b"ply\nformat binary_big_endian 1.0\nelement vertex 5\nproperty double x\nproperty double y\n"
              b"property double z\nproperty float red\nproperty float green\nproperty float blue\n"
              b"element face 2\nproperty list uchar int vertex_indices\nend_header\n")
    vert = np.zeros(5, [("x", ">f8"), ("y", ">f8"), ("z", ">f8"), ("r", ">f4"), ("g", ">f4"), ("b", ">f4")])
    vert["x"], vert["y"], vert["z"] = v.T
    vert["r"] = 0.25
    faces = (np.array([4], ">u1").tobytes() + np.array([0, 1, 2, 3], ">i4").tobytes()
             + np.array([3], ">u1").tobytes() + np.array([1, 4, 2], ">i4").tobytes())
    p = tmp_path / "be.ply"
    p.write_bytes(header + vert.tobytes() + faces)
    scan = read_scan(str(p))
    np.testing.assert_allclose(scan.vertices, v)
    np.testing.assert_array_equal(scan.triangles, [[0, 1, 2], [0, 2, 3], [1, 4, 2]])
    np.testing.assert_allclose(scan.colors[:, 0], 0.25)


def test_point_cloud_is_refused(tmp_path):
    p = tmp_path / "pc.ply"
    p.write_text("ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
                 "property float z\nend_header\n0 0 0\n1 1 1\n")
    with pytest.raises(InputError, match="no triangles"):
        read_scan(str(p))


def test_rgbd_frame_is_meshed_in_the_camera_frame(tmp_path):
    h, w, fx, fy, cx, cy = 20, 30, 100.0, 110.0, 14.5, 9.5
    depth = np.full((h, w), 500, np.uint16)      # 0.5 m plane (depth_scale 1 mm)
    depth[:, 20:] = 800                          # a jump: no triangle bridges it
    depth[2:4, 2:4] = 0                          # no data
    stem = tmp_path / "frame1"
    cv2.imwrite(str(stem) + "_depth.png", depth)
    color = np.zeros((h, w, 3), np.uint8)
    color[..., 0] = np.arange(w)[None, :] * 8
    write_image(str(stem) + "_color.png", color)
    (tmp_path / "frame1_intrinsics.json").write_text(json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy,
                                                                 "depth_scale": 0.001}))
    scan = read_scan(str(stem) + "_depth.png")
    assert scan.unit == "mm"
    v = scan.vertices
    # back-projection: x = (u - cx) z / fx with z in mm
    u = np.round(v[:, 0] * fx / v[:, 2] + cx)
    np.testing.assert_allclose(v[:, 0], (u - cx) * v[:, 2] / fx, atol=1e-9)
    assert set(np.unique(v[:, 2])) == {500.0, 800.0}
    zt = v[scan.triangles, 2]
    assert np.all(zt.max(1) == zt.min(1))        # the jump is not bridged
    n = np.cross(v[scan.triangles[:, 1]] - v[scan.triangles[:, 0]], v[scan.triangles[:, 2]] - v[scan.triangles[:, 0]])
    assert np.all(n[:, 2] < 0)                    # normals face the camera (towards -z)
    np.testing.assert_allclose(scan.colors[:, 0] * 255, np.round(u) * 8, atol=1)
    # pixels without depth have no vertex
    assert len(v) == h * w - 4


def test_mesh_depth_stride():
    d = np.full((9, 9), 0.5)
    v, t, _ = mesh_depth(d, 50.0, 50.0, 4.0, 4.0, stride=2)
    assert len(v) == 25 and len(t) == 2 * 16


def test_landmark_files(tmp_path):
    pts = np.arange(68 * 3, dtype=float).reshape(68, 3)
    np.save(tmp_path / "a_landmarks.npy", pts)
    np.testing.assert_array_equal(read_scan_landmarks(str(tmp_path / "a_landmarks.npy")), pts)
    rows = "".join("{:g}, {:g} {:g}\n".format(*tuple(p)) for p in pts[:51])
    (tmp_path / "b_landmarks.txt").write_text("# x y z\n" + rows)
    np.testing.assert_allclose(read_scan_landmarks(str(tmp_path / "b_landmarks.txt")), pts[:51])
    # LJSON listing its groups in another order: read back in iBUG order
    groups = [("mouth", range(48, 68)), ("jaw", range(17)), ("nose", range(27, 36)),
              ("left_eyebrow", range(17, 22)), ("right_eyebrow", range(22, 27)),
              ("left_eye", range(36, 42)), ("right_eye", range(42, 48))]
    order = [i for _, r in groups for i in r]
    labels, start = [], 0
    for name, r in groups:
        labels.append({"label": name, "mask": list(range(start, start + len(r)))})
        start += len(r)
    (tmp_path / "c_landmarks.ljson").write_text(json.dumps(
        {"version": 2, "labels": labels, "landmarks": {"points": pts[order].tolist(), "connectivity": []}}))
    np.testing.assert_array_equal(read_scan_landmarks(str(tmp_path / "c_landmarks.ljson")), pts)
    np.save(tmp_path / "bad_landmarks.npy", pts[:, :2])
    with pytest.raises(InputError, match=r"\(K, 3\)"):
        read_scan_landmarks(str(tmp_path / "bad_landmarks.npy"))


def test_scan_discovery(tmp_path):
    v, tri = _grid()
    write_mesh(str(tmp_path / "s1.ply"), v, tri)
    write_mesh(str(tmp_path / "s2.obj"), v, tri)
    np.save(tmp_path / "s1_landmarks.npy", v[:5])
    cv2.imwrite(str(tmp_path / "f_depth.png"), np.ones((4, 4), np.uint16))
    (tmp_path / "notes.txt").write_text("x")
    found = find_scans(str(tmp_path))
    assert [scan_stem(p) for p in found] == ["f", "s1", "s2"]
    assert find_scan_landmarks(str(tmp_path / "s1.ply")).endswith("s1_landmarks.npy")
    assert find_scan_landmarks(str(tmp_path / "s2.obj")) is None
