"""The torch renderer: backends agree with the Cython kernel, interpolate is differentiable."""

import numpy as np
import pytest
import torch

from face3d_data.render import rasterize as np_rasterize
from face3d_data.render import render_attributes
from face3d_data.render.torch import interpolate, nvdiffrast_available, rasterize

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def random_batch(seed, b=3, n=60, m=90, size=24):
    rng = np.random.default_rng(seed)
    v = rng.uniform(-3, size + 3, (b, n, 3)).astype(np.float32)
    v[..., 2] = np.round(rng.uniform(-5, 5, (b, n)))        # many equal depths: tie order matters
    v[:, :10, :2] = np.round(v[:, :10, :2])                   # some vertices on pixel centres
    t = rng.integers(0, n, (m, 3))
    return torch.from_numpy(v), torch.from_numpy(t)


@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_and_pure_torch_backends_match_the_kernel(seed):
    v, t = random_batch(seed)
    cpu = rasterize(v, t, (24, 26), backend="cpu")
    pure = rasterize(v, t, (24, 26), backend="cuda")          # the pure-torch path, on CPU tensors
    for b in range(v.shape[0]):
        ref = np_rasterize(v[b].numpy(), t.numpy(), 24, 26)
        np.testing.assert_array_equal(cpu.triangle_id[b].numpy(), ref.triangle_id)
        np.testing.assert_array_equal(pure.triangle_id[b].numpy(), ref.triangle_id)
        np.testing.assert_allclose(pure.barycentric[b].numpy(), ref.barycentric, atol=1e-6)
        np.testing.assert_allclose(pure.depth[b].numpy(), ref.depth, atol=1e-5)


def test_interpolate_matches_render_attributes():
    v, t = random_batch(2)
    attr = torch.randn(v.shape[0], v.shape[1], 4, dtype=torch.float64)
    raster = rasterize(v, t, (24, 24), backend="cpu")
    fixed = interpolate(attr, raster, t)
    recomputed = interpolate(attr, raster, t, vertices=v.double())
    for b in range(v.shape[0]):
        ref = render_attributes(v[b].numpy(), t.numpy(), attr[b].numpy(), 24, 24)
        np.testing.assert_allclose(fixed[b].numpy(), ref, atol=1e-4)
        np.testing.assert_allclose(recomputed[b].numpy(), ref, atol=1e-4)


def test_gradcheck_vertices_and_attributes():
    v = torch.tensor([[[1.2, 0.7, 1.0], [9.6, 2.1, 2.0], [3.3, 8.8, 0.5], [10.4, 9.1, 1.5]]],
                     dtype=torch.float64)
    t = torch.tensor([[0, 1, 2], [1, 3, 2]])
    raster = rasterize(v, t, (11, 12), backend="cpu")
    assert raster.mask.sum() > 20
    attr = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)
    verts = v.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, x: interpolate(a, raster, t, vertices=x), (attr, verts))
    # clip-space input (perspective-correct barycentrics) is differentiable too
    w = 1 + v[..., 2:3] / 4
    ndc = torch.cat([(v[..., :2] + 0.5) / 6 - 1, -v[..., 2:3] / 10], -1)
    clip = torch.cat([ndc * w, w], -1)                         # homogeneous clip coordinates
    raster = rasterize(clip, t, (11, 12), backend="cpu")
    assert raster.mask.sum() > 10
    clip.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, x: interpolate(a, raster, t, vertices=x), (attr, clip))


def test_clip_space_is_perspective_correct():
    # 1 / w is affine in screen space, so interpolating w perspective-correctly and inverting
    # equals the screen-space interpolation of 1 / w
    rng = np.random.default_rng(4)
    img = rng.uniform(0, 20, (1, 30, 3))
    wv = rng.uniform(1, 4, (1, 30, 1))
    ndc = np.concatenate([(img[..., :2] + 0.5) * (2 / 20) - 1, -img[..., 2:3] / 30], -1)
    clip = torch.from_numpy(np.concatenate([ndc * wv, wv], -1))
    t = torch.from_numpy(rng.integers(0, 30, (40, 3)))
    raster = rasterize(clip, t, (20, 20), backend="cpu")
    w_interp = interpolate(torch.from_numpy(wv), raster, t, vertices=clip)[0, ..., 0].numpy()
    inv_w = render_attributes(img[0].astype(np.float32), t.numpy(), 1 / wv[0], 20, 20)[..., 0]
    mask = raster.mask[0].numpy()
    assert mask.sum() > 50
    np.testing.assert_allclose(1 / w_interp[mask], inv_w[mask], rtol=1e-4)


def test_bad_input():
    v, t = random_batch(3)
    with pytest.raises(ValueError, match="backend"):
        rasterize(v, t, (8, 8), backend="opengl")
    with pytest.raises(ValueError, match=r"triangles\[0, 0\] = -1"):
        rasterize(v, torch.tensor([[-1, 1, 2]]), (8, 8))
    with pytest.raises(ValueError, match="vertices"):
        rasterize(v[0], t, (8, 8))
    empty = rasterize(v, t[:0], (5, 6), backend="cuda")
    assert empty.triangle_id.shape == (3, 5, 6) and not empty.mask.any()


@cuda
def test_cuda_backend_matches_cpu():
    v, t = random_batch(5)
    cpu = rasterize(v, t, (24, 24), backend="cpu")
    gpu = rasterize(v.cuda(), t.cuda(), (24, 24), backend="cuda")
    assert torch.equal(gpu.triangle_id.cpu(), cpu.triangle_id)
    torch.testing.assert_close(gpu.barycentric.cpu(), cpu.barycentric, atol=1e-5, rtol=0)


@pytest.mark.skipif(not nvdiffrast_available(), reason="nvdiffrast or CUDA not available")
def test_nvdiffrast_backend_agrees_with_cpu():
    v, t = random_batch(6)
    cpu = rasterize(v, t, (24, 24), backend="cpu")
    nv = rasterize(v.cuda(), t.cuda(), (24, 24), backend="nvdiffrast")
    agree = (nv.triangle_id.cpu() == cpu.triangle_id).float().mean()
    assert agree > 0.95       # fill rule and sub-pixel snapping differ on edges
