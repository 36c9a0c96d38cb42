"""The direct .mat and .npy writers give the bytes of scipy.io.savemat and np.save exactly."""

from __future__ import annotations

import io as _io
import itertools

import numpy as np
import pytest
import scipy.io

from face3d_data import io
from face3d_data.io.mat import _HEADER, _encode_numeric


def savemat_bytes(fields) -> bytes:
    """What encode_mat wrote before it had a direct writer: savemat with the fixed header."""
    buf = _io.BytesIO()
    scipy.io.savemat(buf, dict(fields), do_compression=False, oned_as="column")
    data = bytearray(buf.getvalue())
    data[:116] = _HEADER.ljust(116, b" ")
    return bytes(data)


DTYPES = ["f8", "f4", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "?"]
SHAPES = [(), (1,), (3,), (1, 1), (2, 3), (7, 1), (1, 7), (2, 3, 4), (68, 2), (3, 68), (1, 2, 1, 2)]


@pytest.mark.parametrize("dtype", DTYPES)
def test_encode_mat_equals_savemat_for_numeric_arrays(dtype):
    rng = np.random.default_rng(DTYPES.index(dtype))
    for shape in SHAPES:
        base = rng.random(shape) > 0.5 if dtype == "?" else (rng.standard_normal(shape) * 100).astype(dtype)
        views = [base, np.asfortranarray(base)] + ([base.T, base[..., ::-1]] if base.ndim >= 2 else [])
        for arr, name in itertools.product(views, ["x", "abcd", "abcde", "Pose_Para", "a" * 63]):
            fields = {name: arr, "s": np.float32(2.5)}
            assert _encode_numeric(fields) is not None  # the direct writer, not the fallback
            data = io.encode_mat(fields)
            assert data == savemat_bytes(fields), (dtype, shape, name)
    loaded = scipy.io.loadmat(_io.BytesIO(data))
    np.testing.assert_array_equal(loaded["a" * 63], np.atleast_2d(arr) if arr.ndim < 2 else arr)


def test_encode_mat_scalars_and_a_300wlp_label_file():
    for value in (3, -7, 2.5, True, np.int16(3), np.uint8(200), np.float64(1e300)):
        assert io.encode_mat({"v": value}) == savemat_bytes({"v": value}), value
    rng = np.random.default_rng(0)
    labels = {"Pose_Para": rng.normal(size=(1, 7)).astype(np.float32), "Shape_Para": rng.normal(size=(199, 1)),
              "Exp_Para": rng.normal(size=(29, 1)), "pt2d": rng.uniform(0, 450, (2, 68)),
              "pt3d_68": rng.uniform(0, 450, (3, 68)).astype(np.float32),
              "roi": np.array([[10, 20, 300, 310]], np.int16), "mask": rng.random((4, 4)) > 0.5}
    data = io.encode_mat(labels)
    assert data == savemat_bytes(labels) and data[:116].rstrip() == _HEADER


@pytest.mark.parametrize("fields", [
    {"s": "text"}, {"c": np.array([1 + 2j])}, {"h": np.zeros(3, np.float16)}, {"e": np.zeros((0, 3))},
    {"d": {"a": np.ones(2)}}, {"b": np.ones(3, ">f8")}, {"o": np.array([np.ones(2), "x"], dtype=object)},
])
def test_encode_mat_falls_back_to_savemat_for_anything_else(fields):
    assert _encode_numeric(fields) is None
    assert io.encode_mat(fields) == savemat_bytes(fields)


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.ones((5, 3), np.float16),
    np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.arange(20, dtype=np.int64)[::3], np.zeros(0),
    np.float64(3.5), np.array(True), np.arange(6, dtype=">f8").reshape(2, 3), np.ones((1, 4, 1), np.complex64),
    np.zeros((3, 0, 2), np.uint8), np.ones((2, 3), bool).T, np.ones((1,) * 40, np.int16),
    np.asfortranarray(np.random.default_rng(0).random((4, 5, 6))).astype(np.float32, order="F"),
    np.arange(0, 10, dtype="datetime64[s]"), np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array(["ab", "c"]), np.matrix([[1.0, 2.0]])])
def test_save_npy_writes_the_bytes_of_np_save(array, tmp_path):
    buf = _io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    io.save_npy(tmp_path / "a.npy", array)
    assert (tmp_path / "a.npy").read_bytes() == buf.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]  # no temporary left behind
    with pytest.raises(ValueError):
        io.save_npy(tmp_path / "b.npy", np.array([object()]))
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_write_bytes_and_buffers_write_everything_after_short_writes(tmp_path, monkeypatch):
    import os

    from face3d_data.io import atomic

    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, memoryview(data).cast("B")[:7]))
    data = bytes(range(256)) * 3
    atomic.write_bytes(tmp_path / "a.bin", data)
    assert (tmp_path / "a.bin").read_bytes() == data
    array = np.arange(40, dtype=np.float32).reshape(4, 10)
    atomic.write_buffers(tmp_path / "b.bin", [b"head", memoryview(b""), array, bytearray(b"tail")])
    assert (tmp_path / "b.bin").read_bytes() == b"head" + array.tobytes() + b"tail"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


def test_write_bytes_keeps_the_guarantees_of_atomic_write(tmp_path, monkeypatch):
    import os

    from face3d_data.io import atomic

    target = tmp_path / "new" / "deeper" / "f.jpg"
    atomic.write_bytes(target, b"one")  # creates the folders
    assert target.read_bytes() == b"one"
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((os.path.basename(src), oct(os.stat(src).st_mode & 0o777), open(src, "rb").read()))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    atomic.write_bytes(target, np.frombuffer(b"two!", np.uint8))
    name, mode, content = seen[0]
    assert atomic.is_temporary(name) and name.startswith(f".f.jpg.tmp-{atomic._host()}-{os.getpid()}-")
    assert mode == oct(0o666 & ~atomic._umask()) and content == b"two!" and target.read_bytes() == b"two!"
    monkeypatch.setattr(os, "replace", real_replace)
    with pytest.raises(TypeError, match="bytes-like object is required, not 'str'"):
        atomic.write_bytes(target, "text")  # as file.write said
    real_write = os.write

    def failing_write(fd, data):
        real_write(fd, b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_bytes(target, b"three")
    monkeypatch.setattr(os, "write", real_write)
    assert target.read_bytes() == b"two!"
    assert os.listdir(target.parent) == ["f.jpg"]  # no temporary left behind
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(FileExistsError):  # what os.makedirs said before
        atomic.write_bytes(tmp_path / "afile" / "g.jpg", b"y")
    with pytest.raises(NotADirectoryError):
        atomic.write_bytes(tmp_path / "afile" / "sub" / "g.jpg", b"y")
