"""File I/O: round trips, deterministic writes, clear errors that name the file."""

import os

import numpy as np
import pytest
import scipy.io

from face3d_data import io
from face3d_data.errors import InputError


def test_image_round_trip_png_and_conversions(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    io.write_image(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), rgb)
    import cv2

    cv2.imwrite(str(tmp_path / "g.png"), rgb[:, :, 0])
    gray = io.read_image(tmp_path / "g.png")
    assert gray.shape == (20, 30, 3) and np.array_equal(gray[:, :, 1], rgb[:, :, 0])
    cv2.imwrite(str(tmp_path / "d.png"), (rgb[:, :, ::-1].astype(np.uint16) * 257))
    np.testing.assert_array_equal(io.read_image(tmp_path / "d.png"), rgb)


def test_image_errors_name_the_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty.jpg.*empty"):
        io.read_image(tmp_path / "empty.jpg")
    rgb = np.zeros((32, 32, 3), np.uint8)
    io.write_image(tmp_path / "t.jpg", rgb)
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="t.jpg.*truncated"):
        io.read_image(tmp_path / "t.jpg")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="junk.png"):
        io.read_image(tmp_path / "junk.png")
    with pytest.raises(InputError, match="missing.png.*not found"):
        io.read_image(tmp_path / "missing.png")


def damaged_in_the_middle(jpeg: bytes, seed: int = 0, count: int = 40) -> bytes:
    """The JPEG with ``count`` bytes of its entropy-coded data (between the SOS header and EOI)
    overwritten with random non-marker bytes; every marker segment is left intact. (JPEG has no
    checksum: libjpeg notices most such damage, not all; this seed is one it notices.)"""
    sos = jpeg.index(b"\xff\xda")
    start = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], "big")
    end = jpeg.rindex(b"\xff\xd9")
    middle = (start + end) // 2
    noise = np.random.default_rng(seed).integers(0, 0xFF, count, dtype=np.uint8).tobytes()  # no 0xFF
    return jpeg[:middle] + noise + jpeg[middle + count:]


def _smooth_jpeg(tmp_path, name="clean.jpg", gray=False):
    import cv2

    rng = np.random.default_rng(0)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8), (7, 7), 3)
    io.write_image(tmp_path / name, rgb[:, :, 0] if gray else rgb, quality=90)
    return (tmp_path / name).read_bytes()


def test_jpeg_damaged_in_its_middle_is_an_error_naming_the_file(tmp_path):
    import cv2

    clean = _smooth_jpeg(tmp_path)
    damaged = damaged_in_the_middle(clean)
    head = clean.index(b"\xff\xda") + 14
    assert len(damaged) == len(clean) and damaged[:head] == clean[:head]
    assert damaged.endswith(b"\xff\xd9") and damaged != clean
    (tmp_path / "damaged.jpg").write_bytes(damaged)
    # a lenient decoder accepts it and returns a picture (what read_image did before)
    assert cv2.imdecode(np.frombuffer(damaged, np.uint8), cv2.IMREAD_COLOR) is not None
    with pytest.raises(InputError, match="damaged.jpg.*corrupt JPEG data"):
        io.read_image(tmp_path / "damaged.jpg")


def test_strict_jpeg_decode_gives_opencvs_pixels(tmp_path):
    import cv2

    for name, gray in (("c.jpg", False), ("g.jpg", True)):
        _smooth_jpeg(tmp_path, name, gray)
        ours = io.read_image(tmp_path / name)
        theirs = cv2.imread(str(tmp_path / name), cv2.IMREAD_COLOR)[:, :, ::-1]
        assert ours.shape == (96, 128, 3) and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, theirs)


def test_mat_damaged_in_its_middle_is_an_error_naming_the_file(tmp_path):
    import struct

    io.write_mat(tmp_path / "ok.mat", {"Pose_Para": np.arange(7, dtype=np.float32)[None],
                                       "Shape_Para": np.ones((199, 1))})
    data = bytearray((tmp_path / "ok.mat").read_bytes())
    first = 128 + 8 + struct.unpack("<II", data[128:136])[1]   # the second variable's element tag
    data[first:first + 8] = b"\xff" * 8
    (tmp_path / "mid.mat").write_bytes(bytes(data))
    with pytest.raises(InputError, match="mid.mat.*corrupt"):
        io.read_mat(tmp_path / "mid.mat")


def test_mat_write_is_deterministic_and_readable(tmp_path):
    fields = {"Pose_Para": np.arange(7, dtype=np.float32)[None], "Shape_Para": np.ones((199, 1))}
    io.write_mat(tmp_path / "a.mat", fields)
    io.write_mat(tmp_path / "b.mat", fields)
    assert (tmp_path / "a.mat").read_bytes() == (tmp_path / "b.mat").read_bytes()
    loaded = scipy.io.loadmat(tmp_path / "a.mat")
    np.testing.assert_array_equal(loaded["Pose_Para"], fields["Pose_Para"])
    data = io.read_mat(tmp_path / "a.mat", required={"Pose_Para": (7,), "Shape_Para": (None,)})
    assert data["Shape_Para"].shape == (199, 1)


def test_mat_schema_errors(tmp_path):
    io.write_mat(tmp_path / "a.mat", {"Pose_Para": np.zeros((1, 6)), "x": np.array([[np.inf]])})
    with pytest.raises(InputError, match="a.mat.*Pose_Para.*expected 7"):
        io.read_mat(tmp_path / "a.mat", required={"Pose_Para": (7,)})
    with pytest.raises(InputError, match="missing field 'Exp_Para'"):
        io.read_mat(tmp_path / "a.mat", required={"Exp_Para": (None,)})
    with pytest.raises(InputError, match="'x' contains 1 NaN/inf"):
        io.read_mat(tmp_path / "a.mat", finite=["x"])
    (tmp_path / "z.mat").write_bytes(b"")
    with pytest.raises(InputError, match="z.mat.*empty"):
        io.read_mat(tmp_path / "z.mat")
    (tmp_path / "c.mat").write_bytes(b"MATLAB 5.0 garbage" * 3)
    with pytest.raises(InputError, match="c.mat.*truncated or corrupt"):
        io.read_mat(tmp_path / "c.mat")


def test_atomic_write_leaves_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError):
        with io.atomic_write(target, "w") as f:
            f.write("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_landmark_files(tmp_path):
    pts = np.random.default_rng(1).uniform(0, 100, (68, 2))
    io.write_landmarks_txt(tmp_path / "a.txt", pts)
    np.testing.assert_allclose(io.read_landmarks(tmp_path / "a.txt"), pts, atol=1e-6)
    io.write_pts(tmp_path / "a.pts", pts)
    text = (tmp_path / "a.pts").read_text()
    assert text.startswith("version: 1\nn_points: 68\n{")
    first = [float(v) for v in text.splitlines()[3].split()]
    np.testing.assert_allclose(first, pts[0] + 1, atol=1e-6)  # iBUG files are 1-based
    np.testing.assert_allclose(io.read_landmarks(tmp_path / "a.pts"), pts, atol=1e-6)
    io.write_landmarks_txt(tmp_path / "short.txt", pts[:5])
    with pytest.raises(InputError, match="short.txt.*expected 68 landmarks, found 5"):
        io.read_landmarks(tmp_path / "short.txt")
    (tmp_path / "bad.txt").write_text("1 2\n3 x\n")
    with pytest.raises(InputError, match="bad.txt.*line 2"):
        io.read_landmarks(tmp_path / "bad.txt", count=None)


@pytest.mark.parametrize("name,binary", [("m.obj", False), ("m.ply", True), ("m.ply", False)])
def test_mesh_round_trip(tmp_path, name, binary):
    rng = np.random.default_rng(2)
    v = rng.normal(size=(10, 3)).astype(np.float32)
    t = rng.integers(0, 10, (7, 3)).astype(np.int32)
    c = rng.integers(0, 256, (10, 3)) / 255.0
    uv = rng.uniform(size=(10, 2)).astype(np.float32) if name.endswith("obj") else None
    io.write_mesh(tmp_path / name, v, t, colors=c, uv=uv, binary=binary)
    mesh = io.read_mesh(tmp_path / name)
    np.testing.assert_allclose(mesh.vertices, v, atol=1e-5)
    np.testing.assert_array_equal(mesh.triangles, t)
    np.testing.assert_allclose(mesh.colors, c, atol=1 / 255 if name.endswith("ply") else 1e-6)
    if uv is not None:
        np.testing.assert_allclose(mesh.uv, uv, atol=1e-6)


def test_mesh_errors(tmp_path):
    (tmp_path / "bad.obj").write_text("v 0 0 0\nv 1 0 0\nf 1 2 9\n")
    with pytest.raises(InputError, match="bad.obj.*out of range"):
        io.read_mesh(tmp_path / "bad.obj")
    (tmp_path / "empty.ply").write_bytes(b"")
    with pytest.raises(InputError, match="empty.ply"):
        io.read_mesh(tmp_path / "empty.ply")
    (tmp_path / "quad.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 3 4\n")
    assert io.read_mesh(tmp_path / "quad.obj").triangles.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_datalists_relative_to_root(tmp_path):
    root = tmp_path / "root"
    rows = [(root / "a" / "x.jpg", root / "a" / "x.npy"), (root / "b.jpg", root / "b.npy")]
    assert io.write_datalist(tmp_path / "list.txt", rows, root) == 2
    assert (tmp_path / "list.txt").read_text() == "a/x.jpg a/x.npy\nb.jpg b.npy\n"
    back = io.read_datalist(tmp_path / "list.txt", root, columns=2)
    assert [tuple(map(os.path.normpath, r)) for r in back] == [tuple(map(str, r)) for r in rows]
    io.write_datalist(tmp_path / "l2.txt", [(root / "has space.jpg",)], root)  # percent-encoded
    assert (tmp_path / "l2.txt").read_text() == "has%20space.jpg\n"
    assert io.read_datalist(tmp_path / "l2.txt", root) == [(os.path.join(str(root), "has space.jpg"),)]
