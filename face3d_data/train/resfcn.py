"""PRNet's ResFCN256 encoder-decoder with explicit padding, at any width and resolution.

Layout (PRNet paper and its released ``predictor.py``; width ``w`` = 16 there):

- 1 conv (k 4, stride 1) to ``w`` channels, BatchNorm, ReLU
- 10 residual blocks (k 4) to 2w, 2w, 4w, 4w, 8w, 8w, 16w, 16w, 32w, 32w channels, strides
  alternating 2, 1 (so R → R/32). Block: 1×1 conv to C/2 (BN, ReLU) → k×k conv stride s to C/2
  (BN, ReLU) → 1×1 conv to C; plus a shortcut (1×1 conv stride s, no BN) when the stride or
  channel count changes, else the input; the sum then BN and ReLU.
- 17 transposed convs (k 4): 32w, 16w(s2), 16w, 16w, 8w(s2), 8w, 8w, 4w(s2), 4w, 4w, 2w(s2), 2w,
  w(s2), w, 3, 3, 3 channels, each BN + ReLU except the last, BN + sigmoid.
- output = sigmoid × ``1.1·R`` (``max_pos``): position map in crop pixels, (B, 3, R, R).

No layer has a bias (BatchNorm follows). Padding reproduces TensorFlow's ``SAME`` rule with
explicit amounts (:func:`same_padding`): a k = 4 stride-1 conv pads 1 before / 2 after, stride 2 on
an even size pads 1 / 1; a transposed conv computes the full output and crops the same amounts.
No padding mode is used, so shapes do not depend on the torch version. ``R`` must be a multiple of 32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's SAME rule for one axis: output ``ceil(size/stride)``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """Bias-free conv with explicit SAME padding (computed from the input size)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, bias=False)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        top, bottom = same_padding(x.shape[-2], k, s)
        left, right = same_padding(x.shape[-1], k, s)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


class SameConvTranspose(nn.ConvTranspose2d):
    """Bias-free transposed conv with SAME semantics: output ``size·stride``, the full output
    ``(size-1)·stride + k`` cropped by the padding the matching SAME conv would use."""

    def __init__(self, cin: int, cout: int, kernel: int = 4, stride: int = 1):
        super().__init__(cin, cout, kernel, stride, padding=0, bias=False)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        h, w = x.shape[-2] * s, x.shape[-1] * s
        y = super().forward(x)
        top, _ = same_padding(h, k, s)
        left, _ = same_padding(w, k, s)
        return y[..., top:top + h, left:left + w]


def _bn(channels: int, eps: float, momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)


class ResBlock(nn.Module):
    """PRNet residual block (module docstring)."""

    def __init__(self, cin: int, cout: int, kernel: int = 4, stride: int = 1, eps: float = 1e-3,
                 momentum: float = 0.1):
        super().__init__()
        half = cout // 2
        self.shortcut = SameConv(cin, cout, 1, stride) if (stride != 1 or cin != cout) else None
        self.conv1 = SameConv(cin, half, 1)
        self.bn1 = _bn(half, eps, momentum)
        self.conv2 = SameConv(half, half, kernel, stride)
        self.bn2 = _bn(half, eps, momentum)
        self.conv3 = SameConv(half, cout, 1)
        self.bn = _bn(cout, eps, momentum)

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.conv3(y)
        return F.relu(self.bn(y + shortcut))


#: (channel multiplier of the width, stride) of the 10 residual blocks and 17 transposed convs;
#: the last three transposed convs have 3 channels (multiplier None).
ENCODER = [(2, 2), (2, 1), (4, 2), (4, 1), (8, 2), (8, 1), (16, 2), (16, 1), (32, 2), (32, 1)]
DECODER = [(32, 1), (16, 2), (16, 1), (16, 1), (8, 2), (8, 1), (8, 1), (4, 2), (4, 1), (4, 1),
           (2, 2), (2, 1), (1, 2), (1, 1), (None, 1), (None, 1), (None, 1)]


class ResFCN(nn.Module):
    """PRNet's network: (B, 3, R, R) RGB in [0, 1] → (B, 3, R, R) position map in crop pixels.

    Args:
        width: channels of the first layer (16 in PRNet; 4 for tests).
        resolution: R, a multiple of 32; the output is scaled by ``1.1·R``.
        bn_eps, bn_momentum: BatchNorm settings (TensorFlow's default eps 1e-3).
    """

    def __init__(self, width: int = 16, resolution: int = 256, bn_eps: float = 1e-3,
                 bn_momentum: float = 0.1):
        super().__init__()
        if resolution % 32 or resolution < 32:
            raise ValueError(f"resolution must be a positive multiple of 32, got {resolution}")
        self.width, self.resolution = int(width), int(resolution)
        self.max_pos = 1.1 * resolution
        w = self.width
        self.stem = SameConv(3, w, 4, 1)
        self.stem_bn = _bn(w, bn_eps, bn_momentum)
        blocks, cin = [], w
        for mult, stride in ENCODER:
            blocks.append(ResBlock(cin, mult * w, 4, stride, bn_eps, bn_momentum))
            cin = mult * w
        self.encoder = nn.Sequential(*blocks)
        layers = []
        for mult, stride in DECODER:
            cout = 3 if mult is None else mult * w
            layers += [SameConvTranspose(cin, cout, 4, stride), _bn(cout, bn_eps, bn_momentum)]
            cin = cout
        self.decoder = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.stem_bn(self.stem(x)))
        y = self.encoder(y)
        n = len(self.decoder)
        for i in range(0, n, 2):
            y = self.decoder[i + 1](self.decoder[i](y))
            y = F.relu(y) if i < n - 2 else torch.sigmoid(y.float())
        return y * self.max_pos
