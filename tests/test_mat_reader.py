"""The direct v5 reader of io.read_mat gives exactly what scipy.io.loadmat gives, and leaves every
other file (and every damaged one) to scipy, so results and errors are unchanged."""

from __future__ import annotations

import io as _io
import itertools
import struct
import zlib

import numpy as np
import pytest
import scipy.io

from face3d_data import io
from face3d_data.errors import InputError
from face3d_data.io import mat
from face3d_data.w300lp import labels_to_mat, read_label_fields, read_labels
from face3d_data.w300lp.labels import labels_from_fields


def scipy_fields(path) -> dict:
    """What read_mat returned before it had a direct reader: loadmat, ``__`` keys dropped."""
    return {k: v for k, v in mat._loadmat(str(path)).items() if not k.startswith("__")}


def reference(path):
    """("ok", fields) or ("error", message) of the scipy-only read."""
    try:
        return "ok", scipy_fields(path)
    except InputError as exc:
        return "error", str(exc)


def ours(path):
    try:
        return "ok", io.read_mat(path)
    except InputError as exc:
        return "error", str(exc)


def assert_same_fields(got: dict, want: dict, pickled: bool = False):
    """Same names, dtypes, shapes, memory layout and bytes (``pickled``: ``want`` went through
    pickle, which keeps the layout but not the strides of length-1 axes)."""
    assert list(got) == list(want)
    for name in want:
        a, b = got[name], want[name]
        assert type(a) is np.ndarray and type(b) is np.ndarray, name
        assert a.dtype == b.dtype and a.dtype.str == b.dtype.str, (name, a.dtype, b.dtype)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if pickled:
            assert [s for s, d in zip(a.strides, a.shape) if d > 1] == [s for s, d in zip(b.strides, b.shape) if d > 1]
        else:
            assert a.strides == b.strides, (name, a.strides, b.strides)
        assert a.flags.f_contiguous == b.flags.f_contiguous and a.flags.c_contiguous == b.flags.c_contiguous
        assert a.flags.writeable and b.flags.writeable and a.flags.aligned == b.flags.aligned
        assert a.tobytes(order="A") == b.tobytes(order="A"), name


def assert_same_result(path):
    got, want = ours(path), reference(path)
    assert got[0] == want[0], (path, got, want)
    if got[0] == "ok":
        assert_same_fields(got[1], want[1])
    else:
        assert got[1] == want[1]


def savemat_file(path, fields, **options):
    scipy.io.savemat(path, fields, **options)
    return path


DTYPES = ["f8", "f4", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "?"]
SHAPES = [(), (1,), (3,), (1, 1), (2, 3), (7, 1), (1, 7), (2, 3, 4), (68, 2), (3, 68), (1, 2, 1, 2), (2, 1, 3, 1, 2)]


def numeric_fields(rng, dtype) -> dict:
    fields = {}
    for i, shape in enumerate(SHAPES):
        if dtype == "?":
            base = rng.random(shape) > 0.5
        else:
            base = (rng.standard_normal(shape) * 100).astype(dtype)
        arr = base.T if base.ndim >= 2 and i % 2 else base
        fields[["x", "ab", "roi", "abcd", "abcde", "Pose_Para", "a" * 31][i % 7] + f"_{i}"] = arr
    fields["y"] = rng.standard_normal((1, 1)).astype(dtype) if dtype != "?" else np.ones((1, 1), bool)
    return fields


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compress,oned", list(itertools.product([False, True], ["row", "column"])))
def test_savemat_files_are_read_directly_with_loadmats_arrays(tmp_path, dtype, compress, oned):
    rng = np.random.default_rng(DTYPES.index(dtype))
    fields = numeric_fields(rng, dtype)
    path = savemat_file(tmp_path / "a.mat", fields, do_compression=compress, oned_as=oned)
    direct = mat._read_plain_v5(str(path))
    assert direct is not None  # the direct reader, not the fallback
    assert_same_fields(direct, scipy_fields(path))
    assert_same_fields(io.read_mat(path), scipy_fields(path))


def test_encode_mat_and_300wlp_label_files_are_read_directly(tmp_path):
    rng = np.random.default_rng(0)
    stored = labels_to_mat(rng.normal(size=7) * [1, 1, 1, 100, 100, 100, 0.001] + [0, 0, 0, 0, 0, 0, 0.002],
                           rng.normal(size=(199, 1)), rng.normal(size=(29, 1)).astype(np.float32),
                           tex_para=rng.normal(size=40), pt2d=rng.uniform(0, 450, (68, 2)),
                           pt3d_68=rng.uniform(0, 450, (68, 3)), roi=[10, 20, 300, 310],
                           extra={"SH_Para": rng.normal(size=(9, 3)).astype(np.float32), "k": np.int8(3),
                                  "h": np.uint16(7), "f": np.float32(2.5), "mask": rng.random((4, 4)) > 0.5})
    for compress in (None, False, True):
        path = tmp_path / f"IBUG_1_2_{compress}.mat"
        if compress is None:
            io.write_mat(path, stored)
        else:
            savemat_file(path, stored, do_compression=compress)
        assert mat._read_plain_v5(str(path)) is not None
        assert_same_fields(io.read_mat(path), scipy_fields(path))
        want = labels_from_fields(scipy_fields(path), path)
        got = read_labels(path)
        for name in ("pose_para", "shape_para", "exp_para", "tex_para", "pt2d", "pt3d_68", "roi"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
        assert got.pt2d_valid == want.pt2d_valid
        assert_same_fields(read_label_fields(path), scipy_fields(path))


@pytest.mark.parametrize("fields", [
    {"s": "text", "x": np.ones((2, 2))}, {"c": np.array([1 + 2j])}, {"e": np.zeros((0, 3))},
    {"d": {"a": np.ones(2)}}, {"o": np.array([np.ones(2), "x"], dtype=object)},
    {"h": np.zeros(3, np.float16)},
])
@pytest.mark.parametrize("compress", [False, True])
def test_other_files_are_left_to_scipy(tmp_path, fields, compress):
    path = savemat_file(tmp_path / "o.mat", fields, do_compression=compress)
    if not any(isinstance(v, np.ndarray) and v.dtype == np.float16 for v in fields.values()):
        assert mat._read_plain_v5(str(path)) is None
    got, want = ours(path), reference(path)
    assert got[0] == want[0] == "ok"
    assert list(got[1]) == list(want[1])


def test_sparse_v4_and_v73_files_are_left_to_scipy(tmp_path):
    import scipy.sparse

    path = savemat_file(tmp_path / "s.mat", {"s": scipy.sparse.eye(3, format="csc")})
    assert mat._read_plain_v5(str(path)) is None
    assert_same_result_types(path)
    path = savemat_file(tmp_path / "v4.mat", {"x": np.arange(6.0).reshape(2, 3)}, format="4")
    assert mat._read_plain_v5(str(path)) is None
    assert_same_result(path)
    data = bytearray(io.encode_mat({"x": np.ones((2, 2))}))
    data[124:126] = b"\x00\x02"  # the v7.3 (HDF5) version number
    (tmp_path / "v73.mat").write_bytes(bytes(data))
    assert mat._read_plain_v5(str(tmp_path / "v73.mat")) is None
    with pytest.raises(InputError, match="v73.mat.*v7.3"):
        io.read_mat(tmp_path / "v73.mat")


def assert_same_result_types(path):
    got, want = ours(path), reference(path)
    assert got[0] == want[0] and list(got[1]) == list(want[1])
    assert all(type(got[1][k]) is type(want[1][k]) for k in want[1])


def _matrix(name: bytes, dims, mi_type, payload: bytes, flags=6, dims_type=5, pad=True) -> bytes:
    """A hand-made miMATRIX element (to reach layouts savemat never writes)."""
    def element(t, body):
        if len(body) <= 4 and t != 5:
            return struct.pack("<I", (len(body) << 16) | t) + body.ljust(4, b"\0")
        return struct.pack("<II", t, len(body)) + body + (b"\0" * (-len(body) % 8) if pad else b"")
    body = (struct.pack("<IIII", 6, 8, flags, 0) + element(dims_type, struct.pack(f"<{len(dims)}i", *dims))
            + element(1, name) + element(mi_type, payload))
    return struct.pack("<II", 14, len(body)) + body


def _file(*elements) -> bytes:
    return mat._HEADER.ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM" + b"".join(elements)


def _compressed(element: bytes) -> bytes:
    data = zlib.compress(element)
    return struct.pack("<II", 15, len(data)) + data


ONE = struct.pack("<d", 1.0)
HAND_MADE = {
    # MATLAB's storage types: a double array stored as uint8 / int16 reads as that type in loadmat
    "double_as_u1": _file(_matrix(b"a", (2, 2), 2, bytes([1, 2, 3, 4]))),
    "double_as_i2": _file(_matrix(b"pt2d", (1, 3), 3, struct.pack("<3h", -1, 5, 300))),
    "logical": _file(_matrix(b"m", (1, 3), 2, b"\x01\x00\x01", flags=9 | 2 << 8)),
    "global": _file(_matrix(b"g", (1, 1), 9, struct.pack("<d", 2.0), flags=6 | 4 << 8)),
    "uint32_dims": _file(_matrix(b"u", (2, 1), 9, struct.pack("<2d", 1, 2), dims_type=6)),
    "compressed_unpadded": _file(_compressed(_matrix(b"z", (1, 3), 7, struct.pack("<3f", 1, 2, 3), pad=False))),
    "compressed_padded": _file(_compressed(_matrix(b"z", (1, 3), 7, struct.pack("<3f", 1, 2, 3)))),
    "mixed": _file(_matrix(b"a", (1, 1), 9, struct.pack("<d", 1.0)),
                   _compressed(_matrix(b"bb", (2, 2), 9, struct.pack("<4d", 1, 2, 3, 4))),
                   _matrix(b"c", (1, 2), 1, b"\x05\x06")),
    "latin1_name": _file(_matrix(b"\xe9t\xe9", (1, 1), 9, struct.pack("<d", 1.0))),
    # left to scipy: duplicate names, empty names and arrays, complex, a 1-d dims element, odd counts
    "duplicate": _file(_matrix(b"a", (1, 1), 9, ONE), _matrix(b"a", (1, 1), 9, struct.pack("<d", 2.0))),
    "empty_name": _file(_matrix(b"", (1, 1), 9, struct.pack("<d", 1.0))),
    "dunder": _file(_matrix(b"__x", (1, 1), 9, ONE), _matrix(b"y", (1, 1), 9, ONE)),
    "empty_array": _file(_matrix(b"e", (0, 3), 9, b"")),
    "complex_flag": _file(_matrix(b"c", (1, 1), 9, struct.pack("<d", 1.0), flags=6 | 8 << 8)),
    "one_dim": _file(_matrix(b"o", (3,), 9, struct.pack("<3d", 1, 2, 3))),
    "short_data": _file(_matrix(b"s", (2, 2), 9, struct.pack("<3d", 1, 2, 3))),
    "odd_count": _file(_matrix(b"s", (1, 1), 9, struct.pack("<d", 1.0) + b"\x01")),
    "char_class": _file(_matrix(b"t", (1, 2), 4, "hi".encode("utf-16-le"), flags=4)),
    "trailing_bytes": _file(_matrix(b"a", (1, 1), 9, struct.pack("<d", 1.0))) + b"\0" * 4,
    "trailing_zero_tag": _file(_matrix(b"a", (1, 1), 9, struct.pack("<d", 1.0))) + b"\0" * 8,
    "header_only": _file(),
}


@pytest.mark.parametrize("name", sorted(HAND_MADE))
def test_hand_made_layouts_read_as_scipy_reads_them(tmp_path, name):
    path = tmp_path / f"{name}.mat"
    path.write_bytes(HAND_MADE[name])
    direct = mat._read_plain_v5(str(path))
    if name in ("double_as_u1", "double_as_i2", "logical", "global", "uint32_dims", "compressed_unpadded",
                "compressed_padded", "mixed", "latin1_name"):
        assert direct is not None, name
    elif name not in ("trailing_bytes",):
        assert direct is None, name
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_result(path)


def _damaged(data: bytes, rng) -> list[bytes]:
    """Truncations at many lengths, and copies with 1-3 random bytes replaced."""
    out = [data[:k] for k in sorted({*range(120, min(len(data), 400)), *rng.integers(128, len(data), 40).tolist()})]
    for _ in range(150):
        damaged = bytearray(data)
        for pos in rng.integers(116, len(data), rng.integers(1, 4)):
            damaged[pos] = int(rng.integers(0, 256))
        out.append(bytes(damaged))
    return out


def _in_children(function, paths) -> list:
    """``function(path)`` for each path, run in forked children (scipy's reader kills the process
    with SIGSEGV on some damaged files): each result, or "crash" where the child died."""
    import os
    import pickle

    results, start = [], 0
    while start < len(paths):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: results as a pickle stream, one per path
            import faulthandler

            faulthandler.disable()
            os.close(read)
            with os.fdopen(write, "wb") as out:
                for path in paths[start:]:
                    pickle.dump(function(path), out)
                    out.flush()
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as stream:
            while True:
                try:
                    results.append(pickle.load(stream))
                except EOFError:
                    break
        _, status = os.waitpid(pid, 0)
        if len(results) < len(paths):
            assert os.WIFSIGNALED(status), status
            results.append("crash")
        start = len(results)
    return results


def _quiet(function):
    def run(path):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function(path)
    return run


@pytest.mark.parametrize("compress", [None, False, True])
def test_damaged_files_give_loadmats_result_or_its_error(tmp_path, compress):
    rng = np.random.default_rng({None: 3, False: 5, True: 7}[compress])
    fields = {"Pose_Para": rng.normal(size=(1, 7)).astype(np.float32), "Shape_Para": rng.normal(size=(9, 1)),
              "roi": np.array([[1, 2, 3, 4]], np.int16), "k": np.uint8(4), "pt2d": rng.uniform(0, 9, (2, 5))}
    if compress is None:
        data = io.encode_mat(fields)
    else:
        buf = _io.BytesIO()
        scipy.io.savemat(buf, fields, do_compression=compress)
        data = buf.getvalue()
    paths = []
    for i, damaged in enumerate(_damaged(data, rng)):
        paths.append(tmp_path / f"d{i}.mat")
        paths[-1].write_bytes(damaged)
    wants = _in_children(_quiet(reference), paths)
    outcomes = []
    for path, want in zip(paths, wants):
        try:
            direct = mat._read_plain_v5(str(path))  # pure Python: never crashes
        except InputError as exc:
            # data of a type loadmat has no dtype for: it crashes, or reads through a stray pointer
            assert "unknown element type" in str(exc)
            outcomes.append("unknown type")
            continue
        if direct is None:  # read_mat gives loadmat's result or error (it calls it: see below)
            outcomes.append("declined")
            continue
        assert want != "crash" and want[0] == "ok", (path, want)
        assert_same_fields(direct, want[1], pickled=True)
        assert_same_fields(io.read_mat(path), direct)
        outcomes.append("direct")
    assert {"direct", "declined"} <= set(outcomes)
    assert "ok" in {w[0] for w in wants if w != "crash"} and "error" in {w[0] for w in wants if w != "crash"}


def test_files_the_direct_reader_declines_go_to_loadmat(tmp_path, monkeypatch):
    calls = []

    def fake_loadmat(path):
        calls.append(path)
        raise InputError(path, "from loadmat")

    monkeypatch.setattr(mat, "_loadmat", fake_loadmat)
    path = savemat_file(tmp_path / "s.mat", {"s": "text"})
    with pytest.raises(InputError, match="from loadmat"):
        io.read_mat(path)
    assert calls == [str(path)]


def test_unknown_data_element_types_are_an_input_error(tmp_path):
    for mi_type in (0, 8, 10, 11, 14, 15, 19, 20, 26, 95, 25607):
        path = tmp_path / f"t{mi_type}.mat"
        path.write_bytes(_file(_matrix(b"Pose_Para", (1, 2), 9, struct.pack("<2d", 1, 2)))
                         .replace(struct.pack("<II", 9, 16), struct.pack("<II", mi_type, 16)))
        with pytest.raises(InputError, match=f"t{mi_type}.mat.*corrupt.*'Pose_Para'.*unknown element type {mi_type}"):
            io.read_mat(path)


def test_missing_empty_and_folder_errors_are_unchanged(tmp_path):
    with pytest.raises(InputError, match="nope.mat.*label file not found"):
        io.read_mat(tmp_path / "nope.mat")
    (tmp_path / "z.mat").write_bytes(b"")
    with pytest.raises(InputError, match="z.mat.*empty"):
        io.read_mat(tmp_path / "z.mat")
    (tmp_path / "dir.mat").mkdir()
    with pytest.raises(InputError, match="dir.mat.*not a readable .mat file"):
        io.read_mat(tmp_path / "dir.mat")
    with pytest.raises(InputError, match="label file not found"):
        io.read_mat(str(tmp_path / "a\0b.mat"))


def test_read_arrays_are_independent_and_writeable(tmp_path):
    io.write_mat(tmp_path / "a.mat", {"a": np.zeros((2, 2)), "b": np.ones((1, 3), np.float32)})
    data = io.read_mat(tmp_path / "a.mat")
    data["a"][:] = 5
    np.testing.assert_array_equal(data["b"], np.ones((1, 3), np.float32))
    assert not np.shares_memory(data["a"], data["b"])
