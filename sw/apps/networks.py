"""Two small CNNs on scikit-learn's digits (8x8 grey images) for the CNN front end and its tests,
and the digits data of the demos.

Both train in a few seconds on two CPU cores and keep 8..24 channels, so device simulations of
them stay short. Nothing is cached on disk: the data come from scikit-learn's bundled copy.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitsLeNet", "DigitsResNet", "digits_data", "train", "accuracy",
           "load_digits_split", "DIGITS_SEED"]

#: Seed of the digits train / test split and of training.
DIGITS_SEED = 0


def load_digits_split(seed: int = DIGITS_SEED):
    """Return ``(x_train, y_train, x_test, y_test)`` of scikit-learn's digits as NumPy arrays,
    pixels scaled to [0, 1].

    A fixed 80/20 split: 1437 training and 360 held-out images of 8x8 = 64 pixels.
    """
    from sklearn.datasets import load_digits     # slow to import: only when the data are needed
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_train = int(0.8 * len(x))
    tr, te = order[:n_train], order[n_train:]
    return x[tr], y[tr], x[te], y[te]


class DigitsLeNet(nn.Module):
    """A LeNet-style CNN for 1x8x8 images, written with modules only.

    ``conv3x3 1->8 pad 1 + BN + ReLU`` (8x8), ``maxpool 2`` (4x4), ``conv3x3 8->16 pad 1 + ReLU``,
    ``conv3x3 16->16 stride 2 pad 1 + ReLU`` (2x2), ``Flatten``, ``Dropout``,
    ``Linear(64 -> 10)``.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(16 * 2 * 2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu1(self.bn1(self.conv1(x))))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        return self.fc(self.drop(self.flatten(x)))


class DigitsResNet(nn.Module):
    """A tiny residual / depthwise-separable CNN for 1x8x8 images, written functionally.

    Stem ``conv3x3 1->12 + BN + ReLU``; a residual block ``conv3x3 + BN + ReLU, conv3x3 + BN,
    += input, ReLU``; a depthwise-separable block ``depthwise conv3x3 stride 2 (groups=12) + BN +
    ReLU6, pointwise conv1x1 12->24 + BN + ReLU`` (4x4); ``AdaptiveAvgPool2d(1)``,
    ``torch.flatten(x, 1)``, ``Linear(24 -> 10)``.
    """

    def __init__(self, width: int = 12, out_width: int = 24):
        super().__init__()
        self.stem = nn.Conv2d(1, width, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(width)
        self.conv_a = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(width)
        self.conv_b = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_b = nn.BatchNorm2d(width)
        self.dw = nn.Conv2d(width, width, 3, stride=2, padding=1, groups=width, bias=False)
        self.dw_bn = nn.BatchNorm2d(width)
        self.pw = nn.Conv2d(width, out_width, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(out_width)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(out_width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        y = torch.relu(self.bn_a(self.conv_a(x)))
        y = self.bn_b(self.conv_b(y))
        y += x
        x = y.relu()
        x = F.relu6(self.dw_bn(self.dw(x)))
        x = F.relu(self.pw_bn(self.pw(x)))
        return self.fc(torch.flatten(self.gap(x), 1))


def digits_data(seed: int = DIGITS_SEED):
    """Return ``(x_train, y_train, x_test, y_test)`` of scikit-learn's digits as tensors.

    Images are float32 NCHW ``(N, 1, 8, 8)`` scaled to [0, 1], labels int64; the 80/20 split of
    :func:`load_digits_split` (1437 training and 360 held-out images).
    """
    x_train, y_train, x_test, y_test = load_digits_split(seed)

    def as_img(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, 8, 8)))

    return as_img(x_train), torch.from_numpy(y_train), as_img(x_test), torch.from_numpy(y_test)


def train(model: nn.Module, data, epochs: int = 10, seed: int = DIGITS_SEED,
          batch_size: int = 32, lr: float = 1e-2, reinit: bool = True) -> nn.Module:
    """Train ``model`` on ``data = (x_train, y_train, ...)`` with Adam (cosine learning rate) and
    cross-entropy in mini-batches; return it in eval mode.

    Deterministic for a given ``seed``: ``torch.manual_seed(seed)``, then (``reinit``) every
    submodule's ``reset_parameters()``, so the initial weights do not depend on the global random
    state at construction, then a seeded shuffle each epoch. It runs on one intra-op thread (the
    previous setting is restored): the result then does not depend on the core count, and these
    tiny layers train fastest that way (on a loaded 2-core machine 2 threads were 25x slower).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(model, data, epochs, seed, batch_size, lr, reinit)
    finally:
        torch.set_num_threads(threads)


def _train(model: nn.Module, data, epochs: int, seed: int, batch_size: int, lr: float,
           reinit: bool) -> nn.Module:
    x, y = data[0], data[1]
    torch.manual_seed(seed)
    if reinit:
        for mod in model.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the float model's top-1 accuracy on images ``x`` with labels ``y``."""
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
