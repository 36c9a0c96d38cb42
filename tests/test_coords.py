"""Frame converters: exact round trips and agreement with the documented formulas."""

import numpy as np
import pytest

from face3d_data import coords


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return np.column_stack([rng.uniform(-5, 455, 68), rng.uniform(-5, 455, 68), rng.normal(size=68)])


@pytest.mark.parametrize("to_c, from_c", [
    (coords.matlab_to_canonical, coords.canonical_to_matlab),
    (coords.deep3d_to_canonical, coords.canonical_to_deep3d),
    (coords.face3d_to_canonical, coords.canonical_to_face3d),
])
def test_round_trips(points, to_c, from_c):
    np.testing.assert_allclose(from_c(to_c(points, 450), 450), points, atol=1e-12)
    np.testing.assert_allclose(to_c(from_c(points, 450), 450), points, atol=1e-12)


def test_pt2d_round_trip_and_missing(points):
    p = points[:, :2].copy()
    p[5] = -1
    c = coords.pt2d_to_canonical(p)
    assert np.all(np.isnan(c[5])) and np.all(np.isfinite(np.delete(c, 5, 0)))
    np.testing.assert_allclose(coords.canonical_to_pt2d(c), p, atol=1e-12)


def test_matlab_frame_formula():
    # Pixel (0, 0) (top-left, canonical) is (1, h) in the 1-based y-up Matlab frame.
    np.testing.assert_allclose(coords.canonical_to_matlab([[0.0, 0.0]], 450), [[1.0, 450.0]])
    np.testing.assert_allclose(coords.matlab_to_canonical([[450.0, 1.0]], 450), [[449.0, 449.0]])


def test_deep3d_flip_and_face3d_offset():
    np.testing.assert_allclose(coords.canonical_to_deep3d([[3.0, 0.0]], 224), [[3.0, 223.0]])
    # face3d's generator frame is (x_m, h - 1 - y_m): canonical + (1, -1).
    m = np.array([[100.0, 200.0]])
    face3d = np.array([[m[0, 0], 450 - 1 - m[0, 1]]])
    np.testing.assert_allclose(coords.face3d_to_canonical(face3d, 450), coords.matlab_to_canonical(m, 450))


def test_z_untouched_and_input_not_modified(points):
    before = points.copy()
    out = coords.matlab_to_canonical(points, 450)
    np.testing.assert_array_equal(points, before)
    np.testing.assert_array_equal(out[:, 2], points[:, 2])


def test_bad_arguments():
    with pytest.raises(ValueError, match="height"):
        coords.matlab_to_canonical([[1.0, 2.0]], 0)
    with pytest.raises(ValueError, match="shape"):
        coords.matlab_to_canonical([1.0, 2.0, 3.0, 4.0], 10)
