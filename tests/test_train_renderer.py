"""The R-Net face renderer: camera/clip consistency, half-pixel convention, gradients on every backend."""

import numpy as np
import pytest
import torch

from face3d_data.render.torch import nvdiffrast_available, to_image_frame
from face3d_data.train.renderer import FaceRenderer, PinholeCamera

CPU_BACKENDS = ["cpu", "cuda"]          # "cuda" = the pure-torch rasteriser, run here on CPU tensors
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
nvdiffrast = pytest.mark.skipif(not nvdiffrast_available(), reason="nvdiffrast not importable or no CUDA GPU")


def _small_mesh(seed=0, dtype=torch.float64):
    """A 3x3 vertex grid patch in front of a 12x12 camera, jittered (generic positions)."""
    rng = np.random.default_rng(seed)
    gx, gy = np.meshgrid(np.linspace(-0.9, 0.9, 3), np.linspace(-0.8, 0.8, 3))
    z = 0.3 * rng.standard_normal(gx.shape)
    v = np.stack([gx, gy, z], -1).reshape(-1, 3) + 0.05 * rng.standard_normal((9, 3))
    tri = []
    for r in range(2):
        for c in range(2):
            a, b, d, e = r * 3 + c, r * 3 + c + 1, (r + 1) * 3 + c, (r + 1) * 3 + c + 1
            tri += [[a, d, b], [b, d, e]]
    verts = torch.tensor(v[None], dtype=dtype)
    return verts, torch.tensor(tri), PinholeCamera().scaled(12)


def test_clip_coordinates_map_to_the_projection():
    cam = PinholeCamera()
    pts = torch.tensor([[[0.3, -0.2, 0.5], [-1.0, 0.7, -0.4], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    image = to_image_frame(cam.clip(pts), (224, 224))
    np.testing.assert_allclose(image[..., :2].numpy(), cam.project(pts).numpy(), atol=1e-9)
    # the optical axis hits the image centre (111.5, 111.5) in the canonical frame
    np.testing.assert_allclose(cam.project(pts)[0, 2].numpy(), [111.5, 111.5])
    # depth ordering: a point nearer the camera (larger z) has larger canonical depth
    assert image[0, 0, 2] > image[0, 2, 2] > image[0, 1, 2]
    # u = f x / Z + c - 0.5 with Z = 10 - z; y up in the world is up (smaller v) in the image
    x, y, z = 0.3, -0.2, 0.5
    assert cam.project(pts)[0, 0, 0].item() == pytest.approx(1015 * x / (10 - z) + 111.5)
    assert cam.project(pts)[0, 0, 1].item() == pytest.approx(111.5 - 1015 * y / (10 - z))


def test_scaled_camera_keeps_the_field_of_view():
    cam, small = PinholeCamera(), PinholeCamera().scaled(112)
    p = torch.tensor([[0.4, 0.3, 0.2]], dtype=torch.float64)
    np.testing.assert_allclose((small.project(p) + 0.5).numpy(), ((cam.project(p) + 0.5) / 2).numpy())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradients_match_finite_differences(backend):
    verts, tri, cam = _small_mesh()
    renderer = FaceRenderer(cam, backend=backend)
    out = renderer(verts, tri, torch.zeros(1, 9, 1, dtype=torch.float64))
    assert out.mask.sum() > 20                    # the patch covers a good part of the 12x12 image
    attrs = torch.randn(1, 9, 2, dtype=torch.float64, requires_grad=True)
    verts.requires_grad_(True)

    def image_and_depth(v, a):
        r = renderer(v, tri, a)
        return r.image, r.depth

    assert torch.autograd.gradcheck(image_and_depth, (verts, attrs), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_vertex_gradient_flows_through_barycentrics(backend):
    verts, tri, cam = _small_mesh(seed=3)
    verts.requires_grad_(True)
    colours = torch.linspace(0, 1, 9, dtype=torch.float64)[None, :, None].repeat(1, 1, 3)
    out = FaceRenderer(cam, backend=backend)(verts, tri, colours)
    out.image.sum().backward()
    assert verts.grad is not None and torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    # the mask is not differentiable
    assert not out.mask.requires_grad


def _builtin_face():
    from face3d_data.morphable import load_model
    model = load_model("builtin")
    v = torch.from_numpy(model.vertices().astype(np.float64) / 1e5)          # micrometres -> decimetres
    v = v - v.mean(0)
    return model, v[None], torch.from_numpy(model.triangles.astype(np.int64))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_rendered_pixel_is_where_the_surface_projects(backend):
    """Half-pixel convention: the surface point a pixel shows projects onto that pixel's centre."""
    _model, v, tri = _builtin_face()
    cam = PinholeCamera().scaled(64)
    out = FaceRenderer(cam, backend=backend)(v, tri, v)                        # attribute = world position
    covered = out.mask[0, 0] > 0
    assert covered.sum() > 500
    world = out.image[0].permute(1, 2, 0)[covered]                             # (K, 3)
    uv = cam.project(world)
    rows, cols = covered.nonzero(as_tuple=True)
    np.testing.assert_allclose(uv[:, 0].numpy(), cols.double().numpy(), atol=1e-6)
    np.testing.assert_allclose(uv[:, 1].numpy(), rows.double().numpy(), atol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_projected_landmark_lands_on_the_pixel_rendered_for_it(backend):
    """A tiny triangle around each landmark vertex lights exactly the pixel its projection rounds to."""
    model, v, _ = _builtin_face()
    cam = PinholeCamera()
    lm = v[0, torch.from_numpy(model.landmarks)]                               # (68, 3)
    # move each landmark by < 0.5 px so its projection sits 0.15 / 0.1 px off a pixel centre (an
    # unambiguous rounding), then draw a triangle of circumradius 0.45 px around it
    uv = cam.project(lm)
    z = cam.depth(lm)
    target = uv.round() + torch.tensor([0.15, -0.1], dtype=torch.float64)
    lm = lm + torch.stack([(target[:, 0] - uv[:, 0]) * z / cam.focal, -(target[:, 1] - uv[:, 1]) * z / cam.focal,
                           torch.zeros_like(z)], -1)
    uv = cam.project(lm)
    np.testing.assert_allclose(uv.numpy(), target.numpy(), atol=1e-9)
    r = 0.45 * 10 / 1015
    offsets = torch.tensor([[r, 0, 0], [-r / 2, r * 0.866, 0], [-r / 2, -r * 0.866, 0]], dtype=torch.float64)
    for k in range(68):
        tri_v = (lm[k] + offsets)[None]
        out = FaceRenderer(cam, backend=backend)(tri_v, torch.tensor([[0, 1, 2]]), torch.ones(3, 1))
        hit = (out.mask[0, 0] > 0).nonzero().tolist()
        assert hit == [[int(uv[k, 1].round()), int(uv[k, 0].round())]]


def test_backends_agree_on_the_face():
    model, v, tri = _builtin_face()
    cam = PinholeCamera().scaled(96)
    colours = torch.from_numpy(model.tex_mean.astype(np.float64) / 255)
    a = FaceRenderer(cam, backend="cpu")(v, tri, colours)
    b = FaceRenderer(cam, backend="cuda")(v, tri, colours)
    assert (a.triangle_id == b.triangle_id).float().mean() > 0.999
    same = (a.triangle_id == b.triangle_id) & (a.triangle_id >= 0)
    diff = (a.image - b.image).abs().amax(1)[:, None][same[:, None]]
    assert diff.max() < 1e-5


def test_float32_inside_autocast():
    _model, v, tri = _builtin_face()
    cam = PinholeCamera().scaled(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = FaceRenderer(cam, backend="cpu")(v.to(torch.bfloat16), tri, torch.ones(1, v.shape[1], 3,
                                                                                 dtype=torch.bfloat16))
    assert out.image.dtype == torch.float32 and out.depth.dtype == torch.float32
    assert out.mask.sum() > 0


def test_auto_backend_on_cpu_is_the_cython_kernel():
    assert FaceRenderer(backend="auto").resolved_backend(torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="backend"):
        FaceRenderer(backend="opengl")


@cuda
@pytest.mark.parametrize("backend", ["cuda"] + (["nvdiffrast"] if nvdiffrast_available() else []))
def test_gpu_backends_match_cpu(backend):
    model, v, tri = _builtin_face()
    cam = PinholeCamera()
    colours = torch.from_numpy(model.tex_mean.astype(np.float32) / 255)
    ref = FaceRenderer(cam, backend="cpu")(v.float(), tri, colours)
    out = FaceRenderer(cam, backend=backend)(v.float().cuda(), tri.cuda(), colours.cuda())
    ids, ref_ids = out.triangle_id.cpu(), ref.triangle_id
    covered = ref_ids >= 0
    assert (ids[covered] == ref_ids[covered]).float().mean() >= 0.995
    same = (ids == ref_ids) & covered
    assert (out.image.cpu() - ref.image).abs().amax(1)[same].max() <= 1e-5


@nvdiffrast
def test_nvdiffrast_gradients_reach_vertices():
    verts, tri, cam = _small_mesh(dtype=torch.float32)
    verts = verts.cuda().requires_grad_(True)
    out = FaceRenderer(cam, backend="nvdiffrast")(verts, tri.cuda(), torch.ones(1, 9, 3, device="cuda"))
    (out.image * torch.arange(12.0, device="cuda")).sum().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0



@cuda
@pytest.mark.parametrize("backend", ["cuda", pytest.param("nvdiffrast", marks=nvdiffrast)])
def test_gpu_gradients_match_finite_differences(backend):
    """The CUDA backends' gradients against finite differences (the rasteriser only picks triangles;
    attributes and depth are interpolated with differentiable barycentrics, in float64 here)."""
    verts, tri, cam = _small_mesh()
    verts, tri = verts.cuda(), tri.cuda()
    renderer = FaceRenderer(cam, backend=backend)
    assert renderer(verts, tri, torch.zeros(1, 9, 1, dtype=torch.float64, device="cuda")).mask.sum() > 20
    attrs = torch.randn(1, 9, 2, dtype=torch.float64, device="cuda", requires_grad=True)
    verts.requires_grad_(True)

    def image_and_depth(v, a):
        r = renderer(v, tri, a)
        return r.image, r.depth

    assert torch.autograd.gradcheck(image_and_depth, (verts, attrs), eps=1e-6, atol=1e-5)
