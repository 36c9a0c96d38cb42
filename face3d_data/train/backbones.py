"""Image backbones written in plain torch: ResNet-18/34/50/101 and MobileNet-v1.

The ResNets follow the standard architecture (He et al. 2016; bottleneck "v1.5" with the stride
on the 3x3 convolution) and use torchvision's parameter names, so an ImageNet state dict saved by
torchvision (``resnet50-0676ba61.pth``) loads with :func:`load_imagenet_weights` (keys of the
classifier ``fc`` are dropped, as Deep3DFaceRecon does). torchvision itself is not needed.

MobileNet-v1 (Howard et al. 2017) is the 3DDFA regressor's backbone: a 3x3 stride-2 convolution
to 32 channels, 13 depthwise-separable blocks up to 1024 channels, global average pooling;
``widen`` scales every width.

Every backbone maps (B, 3, H, W) to (B, ``out_features``) pooled features.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from face3d_data.errors import ConfigError

__all__ = ["RESNET_DEPTHS", "MobileNetV1", "ResNet", "build_backbone", "load_imagenet_weights"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


#: depth -> (block, blocks per stage)
RESNET_DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
                 50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


class ResNet(nn.Module):
    """ResNet-``depth`` feature extractor: (B, 3, H, W) -> (B, 512 or 2048) after global average pooling."""

    def __init__(self, depth: int = 50):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ConfigError(f"resnet depth: expected one of {sorted(RESNET_DEPTHS)}, got {depth}")
        block, counts = RESNET_DEPTHS[depth]
        self.depth = depth
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, n) in enumerate(zip((64, 128, 256, 512), counts)):
            layers = []
            for j in range(n):
                layers.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class MobileNetV1(nn.Module):
    """MobileNet-v1 feature extractor: (B, 3, H, W) -> (B, int(1024 * widen))."""

    _CFG = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
            (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, widen: float = 1.0):
        super().__init__()
        if not widen > 0:
            raise ConfigError(f"widen: expected > 0, got {widen}")

        def ch(c):
            return max(8, round(c * widen))

        layers = [nn.Conv2d(3, ch(32), 3, 2, 1, bias=False), nn.BatchNorm2d(ch(32)), nn.ReLU(inplace=True)]
        cin = ch(32)
        for cout, stride in self._CFG:
            cout = ch(cout)
            layers += [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                       nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.out_features = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


def build_backbone(name: str) -> nn.Module:
    """``resnet18|resnet34|resnet50|resnet101|mobilenet_v1[_<widen>]`` (e.g. ``mobilenet_v1_0.5``)."""
    if name.startswith("resnet") and name[6:].isdigit():
        return ResNet(int(name[6:]))
    if name == "mobilenet_v1" or name.startswith("mobilenet_v1_"):
        tail = name[len("mobilenet_v1_"):] if name != "mobilenet_v1" else "1"
        try:
            return MobileNetV1(float(tail))
        except ValueError:
            pass
    raise ConfigError(f"backbone: expected resnet18/34/50/101 or mobilenet_v1[_WIDEN], got {name!r}")


def load_state_dict_file(path: str, what: str) -> dict:
    """A state dict from a local ``.pth``/``.pt`` file (``module.`` prefixes removed); ConfigError if unusable."""
    if not os.path.isfile(path):
        raise ConfigError(f"{what}: {path}: no such file (weights are never downloaded; give a local path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means the same to the user)
        raise ConfigError(f"{what}: {path}: not a readable torch state dict ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{what}: {path}: expected a dict of tensors")
    return {(k.removeprefix("module.")): v for k, v in state.items()}


def load_imagenet_weights(net: nn.Module, path: str) -> None:
    """Load torchvision-format ImageNet weights into a :class:`ResNet` (every key with ``fc`` dropped).

    Raises:
        ConfigError: missing/unreadable file, or keys/shapes that do not match this backbone.
    """
    state = {k: v for k, v in load_state_dict_file(path, "imagenet_weights").items() if "fc" not in k}
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        first = (missing or unexpected or wrong)[0]
        raise ConfigError(f"imagenet_weights: {path}: does not fit {type(net).__name__}"
                          f"{getattr(net, 'depth', '')} ({len(missing)} missing, {len(unexpected)} unexpected, "
                          f"{len(wrong)} wrong-shape keys, e.g. {first!r})")
    net.load_state_dict(state)


def set_bn_momentum(model: nn.Module, momentum: float) -> nn.Module:
    """Set the running-statistics momentum of every BatchNorm layer of ``model`` (in place; returns it).

    0.1 is torch's (and torchvision's ResNet) default; overfitting a few samples in a few steps needs
    more (the eval-mode statistics otherwise lag the weights)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = float(momentum)
    return model
