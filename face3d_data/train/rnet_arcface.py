"""The frozen face-recognition network of R-Net's identity loss (insightface ArcFace IResNet), and the
batched similarity warp to its 112 x 112 input.

The user gives a local ``backbone.pth`` of insightface's ``arcface_torch`` IResNet (Deep3DFaceRecon
uses ``ms1mv3_arcface_r50_fp16/backbone.pth``); the number of blocks per stage is read from the
file's keys, so r18/r34/r50/r100 files all load. Nothing is downloaded.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from face3d_data.errors import ConfigError
from face3d_data.landmarks import ARCFACE_TEMPLATE_112
from face3d_data.train.backbones import load_state_dict_file

__all__ = ["IResNet", "five_points", "load_arcface", "similarity_to_template", "warp_to_template"]


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x):
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """IResNet face embedding: (B, 3, 112, 112) in [-1, 1] -> (B, 512)."""

    def __init__(self, layers=(3, 4, 14, 3), embedding: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = [IBasicBlock(cin, width, 2)] + [IBasicBlock(width, width, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


def load_arcface(path: str) -> IResNet:
    """A frozen (eval mode, no gradients) :class:`IResNet` from a local state-dict file.

    Raises:
        ConfigError: missing or unreadable file, or keys that are not an IResNet's.
    """
    state = load_state_dict_file(path, "arcface_weights")
    counts = [0, 0, 0, 0]
    for key in state:
        m = re.match(r"layer([1-4])\.(\d+)\.", key)
        if m:
            counts[int(m.group(1)) - 1] = max(counts[int(m.group(1)) - 1], int(m.group(2)) + 1)
    if min(counts) == 0 or "fc.weight" not in state:
        raise ConfigError(f"arcface_weights: {path}: not an insightface IResNet backbone (no layer1-4/fc keys)")
    net = IResNet(tuple(counts), embedding=int(state["fc.weight"].shape[0]))
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"arcface_weights: {path}: does not fit IResNet{tuple(counts)}: "
                          f"{str(exc).splitlines()[0]}") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def five_points(lm68: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) -> (B, 5, 2) eye centres, nose tip, mouth corners (as :func:`face3d_data.landmarks.five_from_68`)."""
    return torch.stack([lm68[:, [36, 39]].mean(1), lm68[:, [42, 45]].mean(1), lm68[:, 30], lm68[:, 48],
                        lm68[:, 54]], 1)


def similarity_to_template(points5: torch.Tensor, template: torch.Tensor | None = None) -> torch.Tensor:
    """Batched least-squares 2-D similarity (no reflection) (B, 5, 2) -> (B, 2, 3) onto the ArcFace template."""
    if template is None:
        template = torch.tensor(ARCFACE_TEMPLATE_112, dtype=points5.dtype, device=points5.device)
    p = points5 - points5.mean(1, keepdim=True)
    q = template - template.mean(0)
    norm = (p * p).sum((1, 2)).clamp_min(1e-12)
    a = (p[..., 0] * q[..., 0] + p[..., 1] * q[..., 1]).sum(1) / norm
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(1) / norm
    lin = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)          # (B, 2, 2)
    t = template.mean(0) - (lin @ points5.mean(1)[..., None])[..., 0]
    return torch.cat([lin, t[..., None]], -1)


def warp_to_template(images: torch.Tensor, matrix: torch.Tensor, size: int = 112) -> torch.Tensor:
    """Resample (B, C, H, W) images through (B, 2, 3) canonical-frame similarities to (B, C, size, size)."""
    b, _, h, w = images.shape
    lin, t = matrix[:, :, :2], matrix[:, :, 2]
    inv = torch.linalg.inv(lin)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=images.dtype, device=images.device),
                            torch.arange(size, dtype=images.dtype, device=images.device), indexing="ij")
    q = torch.stack([xs, ys], -1).view(1, -1, 2) - t[:, None]                          # (B, S*S, 2)
    src = q @ inv.transpose(1, 2)
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1).view(b, size, size, 2)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
