"""R-Net: a ResNet regressing Deep3DFaceRecon's coefficient vector, with a zero-initialised head.

(B, 3, S, S) RGB in [0, 1] -> (B, K) coefficients (layout in :mod:`face3d_data.train.rnet_face`).
The head is one linear layer on the pooled features (the same function as Deep3DFaceRecon's seven
1x1 convolutions), weights and bias initialised to 0, so the first prediction is the mean face,
frontal, centred, under ambient light: a network initialised otherwise starts with faces outside
the picture (zero photometric loss, huge landmark loss).
"""

from __future__ import annotations

import torch
from torch import nn

from face3d_data.train.backbones import ResNet, load_imagenet_weights

__all__ = ["RNet"]


class RNet(nn.Module):
    """ResNet-``depth`` + zero-initialised linear head of ``n_coefficients`` outputs.

    Args:
        n_coefficients: size of the coefficient vector (257 for Deep3D's BFM front model).
        depth: 18, 34, 50 (Deep3DFaceRecon's default) or 101.
        imagenet_weights: optional local torchvision ResNet state-dict file (``fc`` keys dropped);
            empty = random initialisation.
    """

    def __init__(self, n_coefficients: int, depth: int = 50, imagenet_weights: str = ""):
        super().__init__()
        self.backbone = ResNet(depth)
        if imagenet_weights:
            load_imagenet_weights(self.backbone, imagenet_weights)
        self.head = nn.Linear(self.backbone.out_features, int(n_coefficients))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
