"""Maps (PNCC, depth, normals, visibility, UV) on an analytic sphere, against closed forms."""

import numpy as np
import pytest

from face3d_data.render import (
    depth_visual,
    ncc_code,
    render_depth,
    render_normals,
    render_pncc,
    render_uv,
    vertex_normals,
    vertex_visibility,
)

SIZE, CENTRE, RADIUS = 64, 31.5, 26.0


def sphere(n_lat=40, n_lon=80):
    """Unit sphere in a right-handed model frame, triangles counter-clockwise seen from outside."""
    lat = np.linspace(0, np.pi, n_lat + 1)
    lon = np.linspace(0, 2 * np.pi, n_lon, endpoint=False)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    v = np.stack([np.sin(la) * np.sin(lo), np.cos(la), np.sin(la) * np.cos(lo)], -1).reshape(-1, 3)
    tris = []
    for i in range(n_lat):
        for j in range(n_lon):
            a, b = i * n_lon + j, i * n_lon + (j + 1) % n_lon
            c, d = a + n_lon, b + n_lon
            tris += [[a, c, b], [b, c, d]]
    return v, np.array(tris)


def project(model, centre=CENTRE, radius=RADIUS, z_offset=0.0):
    """Orthographic projection into the canonical frame (y down), z in image units."""
    return np.stack([centre + radius * model[:, 0], centre - radius * model[:, 1],
                     radius * model[:, 2] + z_offset], -1).astype(np.float32)


MODEL, TRIS = sphere()
IMG = project(MODEL)
YS, XS = np.mgrid[:SIZE, :SIZE]
X, Y = (XS - CENTRE) / RADIUS, (CENTRE - YS) / RADIUS
INNER = X ** 2 + Y ** 2 < 0.8 ** 2
Z = np.sqrt(np.clip(1 - X ** 2 - Y ** 2, 0, None))


def test_sphere_winding_gives_outward_normals():
    n = vertex_normals(MODEL, TRIS)
    assert np.all(np.einsum("nc,nc->n", n, MODEL) > 0.99)


def test_ncc_code_variants():
    rng = np.random.default_rng(0)
    shape = rng.normal(0, 1, (50, 3)) * [3, 2, 1]
    code = ncc_code(shape)
    np.testing.assert_allclose(code.min(0), 0, atol=1e-7)
    np.testing.assert_allclose(code.max(0), 1, atol=1e-7)
    np.testing.assert_allclose(code[:, 1], (shape[:, 1] - shape[:, 1].min()) / np.ptp(shape[:, 1]), atol=1e-6)
    exp = rng.normal(0, 0.5, (50, 3))
    keep = np.arange(10, 40)
    v2 = ncc_code(shape, exp, keep=keep)
    assert v2.shape == (30, 3)
    np.testing.assert_allclose(v2, ncc_code((shape + exp)[keep]), atol=1e-7)
    assert np.abs(v2 - code[keep]).max() > 0.01           # v1 and v2 are not interchangeable
    with pytest.raises(ValueError, match="keep"):
        ncc_code(shape, keep=np.array([0, 50]))


def test_pncc_of_sphere():
    pncc = render_pncc(IMG, TRIS, ncc_code(MODEL), SIZE, SIZE)
    expected = (np.stack([X, Y, Z], -1) + 1) / 2
    np.testing.assert_allclose(pncc[INNER], expected[INNER], atol=0.01)
    assert np.all(pncc[X ** 2 + Y ** 2 > 1.05] == 0)


def test_depth_of_sphere_and_visual():
    dm = render_depth(IMG, TRIS, SIZE, SIZE)
    np.testing.assert_allclose(dm.depth[INNER], RADIUS * Z[INNER], atol=0.3)
    assert np.array_equal(dm.mask[X ** 2 + Y ** 2 < 0.95], np.ones((X ** 2 + Y ** 2 < 0.95).sum(), bool))
    assert not dm.mask[X ** 2 + Y ** 2 > 1.05].any() and np.all(dm.depth[~dm.mask] == 0)
    vis8 = depth_visual(dm)
    assert vis8.dtype == np.uint8 and vis8.max() == 255 and np.all(vis8[~dm.mask] == 0)
    assert vis8[32, 32] > vis8[32, 10] > 0                 # nearer is brighter
    vis16 = depth_visual(dm, bits=16)
    assert vis16.dtype == np.uint16 and vis16.max() == 65535 and vis16[dm.mask].min() >= 1


def test_faces_composite_by_true_z():
    near = project(MODEL, centre=26, z_offset=10)
    far = project(MODEL, centre=38, z_offset=0)
    code = ncc_code(MODEL)
    for order in ([near, far], [far, near]):
        dm = render_depth(order, TRIS, SIZE, SIZE)
        np.testing.assert_array_equal(dm.depth, np.maximum(render_depth(near, TRIS, SIZE, SIZE).depth,
                                                           render_depth(far, TRIS, SIZE, SIZE).depth))
    a = render_pncc([near, far], TRIS, code, SIZE, SIZE)
    b = render_pncc(np.stack([far, near]), TRIS, code, SIZE, SIZE)
    np.testing.assert_array_equal(a, b)


def test_normals_of_sphere():
    normals = render_normals(IMG, TRIS, SIZE, SIZE)
    expected = np.stack([X, -Y, Z], -1)                    # camera frame: y down, z to the viewer
    np.testing.assert_allclose(normals[INNER], expected[INNER], atol=0.02)
    assert np.all(normals[X ** 2 + Y ** 2 > 1.05] == 0)


def test_vertex_visibility_of_sphere():
    visible = vertex_visibility(IMG, TRIS, SIZE, SIZE)
    z = MODEL[:, 2]
    assert visible[z > 0.1].all()
    assert not visible[z < -0.1].any()
    # an occluder in front of the left half hides the vertices under it
    quad = np.array([[-5, -5, 100], [28, -5, 100], [-5, 70, 100], [28, 70, 100]], np.float32)
    both = np.concatenate([IMG, quad])
    tris = np.concatenate([TRIS, [[len(IMG), len(IMG) + 2, len(IMG) + 1],
                                  [len(IMG) + 1, len(IMG) + 2, len(IMG) + 3]]])
    seen = vertex_visibility(both, tris, SIZE, SIZE, cull_back_faces=False)[:len(IMG)]
    assert not seen[(IMG[:, 0] < 26) & (z > 0.1)].any()
    assert seen[(IMG[:, 0] > 30) & (z > 0.1)].all()
    moved = IMG.copy()
    moved[:, 0] += 100                                     # off-screen: invisible
    assert not vertex_visibility(moved, TRIS, SIZE, SIZE).any()


def test_render_uv_linear_attributes_are_exact():
    rng = np.random.default_rng(1)
    n = 9
    u, v = np.meshgrid(np.linspace(0, 31, n), np.linspace(0, 31, n))
    uv = np.stack([u.ravel(), v.ravel()], -1) + rng.uniform(-0.3, 0.3, (n * n, 2)) * \
        ((u.ravel() > 0) & (u.ravel() < 31) & (v.ravel() > 0) & (v.ravel() < 31))[:, None]
    tris = []
    for j in range(n - 1):
        for i in range(n - 1):
            a = j * n + i
            tris += [[a, a + 1, a + n + 1], [a, a + n + 1, a + n]]
    attributes = np.stack([2 * uv[:, 0] + 1, uv[:, 1] - 3 * uv[:, 0]], -1)   # linear in uv
    out = render_uv(uv, tris, attributes, 32, 32, background=-1)
    ys, xs = np.mgrid[:32, :32]
    inner = (xs < 31) & (ys < 31)
    np.testing.assert_allclose(out[..., 0][inner], (2 * xs + 1)[inner], atol=1e-3)
    np.testing.assert_allclose(out[..., 1][inner], (ys - 3 * xs)[inner], atol=1e-3)
