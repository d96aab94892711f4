"""ResNet-18 and MobileNetV2 with torchvision's exact module structure, for ImageNet-size runs.

torchvision's PyPI wheel needs CUDA libraries the CPU torch wheel lacks, so the two networks are
written here module for module as torchvision 0.20 builds them (``torchvision.models.resnet18``
and ``mobilenet_v2``: the same submodule names, layers and forward functions), with random
weights from a fixed seed and BatchNorm statistics that are not the identity
(:func:`randomize_batchnorm`), so that folding BatchNorm is exercised. :func:`synthetic_images`
gives calibration and test inputs (smooth random images, not ImageNet data).
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet", "resnet18", "Conv2dNormActivation", "InvertedResidual",
           "MobileNetV2", "mobilenet_v2", "randomize_batchnorm", "synthetic_images",
           "IMAGENET_SEED", "IMAGENET_MODELS", "imagenet_model"]

#: Seed of the weights, the BatchNorm statistics and the synthetic images.
IMAGENET_SEED = 2026


# -- ResNet (torchvision.models.resnet) ------------------------------------------------------------
def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, layers: list[int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * BasicBlock.expansion, stride),
                                       nn.BatchNorm2d(planes * BasicBlock.expansion))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.fc(x)
        return x


def resnet18(num_classes: int = 1000, seed: int = IMAGENET_SEED) -> ResNet:
    """Return ResNet-18 (11.7 M parameters, 1.81 GMACs at 224x224) with random weights from
    ``seed`` and random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = ResNet([2, 2, 2, 2], num_classes)
    return randomize_batchnorm(model, seed).eval()


# -- MobileNetV2 (torchvision.models.mobilenetv2) --------------------------------------------------
def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, groups: int = 1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU6(inplace=True))
        self.out_channels = out_channels


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1))
        layers.extend([
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ])
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0,
                 round_nearest: int = 8, dropout: float = 0.2):
        super().__init__()
        input_channel, last_channel = 32, 1280
        setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
                   [6, 160, 3, 2], [6, 320, 1, 1]]
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [Conv2dNormActivation(3, input_channel, stride=2)]
        for t, c, n, s in setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride,
                                                 expand_ratio=t))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout),
                                        nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


def mobilenet_v2(num_classes: int = 1000, seed: int = IMAGENET_SEED) -> MobileNetV2:
    """Return MobileNetV2 (3.5 M parameters, 0.30 GMACs at 224x224) with random weights from
    ``seed`` and random BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    model = MobileNetV2(num_classes)
    return randomize_batchnorm(model, seed).eval()


# -- weights, statistics, inputs -------------------------------------------------------------------
def randomize_batchnorm(model: nn.Module, seed: int = IMAGENET_SEED) -> nn.Module:
    """Give every BatchNorm2d of ``model`` a non-trivial affine transform and running statistics
    (scale 0.5..1.5, shift +-0.2, mean +-0.1, variance 0.5..2), from ``seed``; return ``model``."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.4 * torch.rand(n, generator=g) - 0.2)
                m.running_mean.copy_(0.2 * torch.rand(n, generator=g) - 0.1)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
    return model


def synthetic_images(n: int, size: int = 224, seed: int = IMAGENET_SEED) -> torch.Tensor:
    """Return ``n`` smooth random RGB images ``(n, 3, size, size)``, normalised like ImageNet
    inputs (about zero mean, unit variance): low-frequency noise upsampled bilinearly."""
    g = torch.Generator().manual_seed(seed + 2)
    coarse = torch.randn(n, 3, max(2, size // 16), max(2, size // 16), generator=g)
    x = nn.functional.interpolate(coarse, size=(size, size), mode="bilinear",
                                  align_corners=False)
    return x + 0.25 * torch.randn(n, 3, size, size, generator=g)


#: The networks ``stamen demo --model`` and the benchmark know, by name.
IMAGENET_MODELS = {"resnet18": resnet18, "mobilenetv2": mobilenet_v2}


def imagenet_model(name: str, seed: int = IMAGENET_SEED) -> nn.Module:
    """Return the network ``name`` of :data:`IMAGENET_MODELS`."""
    if name not in IMAGENET_MODELS:
        raise ValueError(f"ImageNet model must be one of {tuple(IMAGENET_MODELS)}, not {name!r}")
    return IMAGENET_MODELS[name](seed=seed)
