"""Network definitions, shared by training, evaluation, export and the TorchServe handler.

Networks are built by name from plain keyword arguments (``build_network``) so that a
checkpoint or a ``.mar`` can describe its network as JSON and be rebuilt without Hydra,
Lightning or unpickling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NUM_CLASSES = 10
"""Digits 0 to 9: the width of every network's output."""


class SeedCNN(nn.Module):
    """The seed Flask app's LeNet-style CNN, layer for layer."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose mask is drawn with ``torch.rand``: the same Bernoulli mask in
    distribution, from a different random stream.

    ATen's CPU ``bernoulli_`` takes its vectorised MKL path on Intel CPUs only; on this AMD
    CPU it draws element by element, which made dropout 6% of the width-40 network's
    bfloat16 training step, and ``rand`` costs about a third as much (docs/performance.md).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * (keep.to(x.dtype) / (1 - self.p))


def _stage(in_channels: int, out_channels: int, pool_first: bool) -> list[nn.Module]:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
    norm_relu = [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
    return [conv, nn.MaxPool2d(2), *norm_relu] if pool_first else [conv, *norm_relu, nn.MaxPool2d(2)]


def _strided_stem(out_channels: int, kernel_size: int) -> list[nn.Module]:
    conv = nn.Conv2d(1, out_channels, kernel_size, stride=2, padding=(kernel_size - 1) // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class DigitCNN(nn.Module):
    """The project's network: three conv-BN-ReLU stages, each halving the resolution.

    The default recipe's arguments are in ``configs/model/digit_cnn.yaml`` (width 32, dropout
    0.3, ``pool_first``, ``stem_kernel: 5``). The constructor's defaults keep the first
    version's layer order (``pool_first=False``, ``stem_kernel=0``) for the specs of
    checkpoints written before those options existed.

    ``width`` channels at 28x28 (at 14x14 after a strided stem), twice that at 14x14, four
    times at 7x7, then dropout and a linear classifier on the 3x3 map: 0.10M parameters at
    the default ``width=32`` (32, 64 and 128 channels: oneDNN's bfloat16 kernels train 1.4x
    as many images per second here as with the 40, 80 and 160 of ``width=40``).

    ``pool_first`` max-pools each convolution's output before its batch norm and ReLU, which
    then run on a quarter of the values: the same function class (ReLU commutes with max
    pooling), a different batch statistic, and a step a third faster on a CPU, where
    normalisation and activations cost as much as the convolutions. (False keeps the
    layer order of the earlier default, so its checkpoints still load.)

    ``stem_kernel`` > 0 replaces the first stage with one ``stem_kernel``-sized convolution of
    stride 2, straight to 14x14: a quarter of the first stage's outputs and no max-pooling at
    28x28, which with its gradient was about a quarter of a bfloat16 training step here.
    """

    def __init__(
        self, width: int = 32, dropout: float = 0.1, pool_first: bool = False, stem_kernel: int = 0
    ) -> None:
        super().__init__()
        stem = _strided_stem(width, stem_kernel) if stem_kernel else _stage(1, width, pool_first)
        self.features = nn.Sequential(
            *stem,
            *_stage(width, 2 * width, pool_first),
            *_stage(2 * width, 4 * width, pool_first),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            Dropout(dropout),
            nn.Linear(4 * width * 3 * 3, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


NETWORKS: dict[str, type[nn.Module]] = {"seed_cnn": SeedCNN, "digit_cnn": DigitCNN}


def build_network(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered network from its name and keyword arguments."""
    try:
        network_class = NETWORKS[name]
    except KeyError:
        raise ValueError(f"Unknown network {name!r}; choose one of {sorted(NETWORKS)}") from None
    return network_class(**kwargs)
