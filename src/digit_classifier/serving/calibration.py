"""What an int8 archive is calibrated on, and the activation ranges it carries.

MNIST training digits, half of them as :class:`~digit_classifier.training.augment.DrawnDigitAugment`
draws them at full strength (thicker and thinner, warped, with slashes, flags and crossbars),
so that the ranges cover canvas drawings as well as MNIST. Each is made the 8-bit ink field
a served image becomes and normalised like one. Seeded: the same checkpoint always
calibrates the same way.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.datasets import MNIST

from digit_classifier import checkout
from digit_classifier.runtime.inference import for_inference
from digit_classifier.runtime.precision import measure_int8_ranges
from digit_classifier.runtime.preprocessing import normalize
from digit_classifier.training.augment import DrawnDigitAugment

COUNT = 2048
"""With 512 the int8 network read 4 more MNIST test images and 1 more drawn digit wrong than
in float32; with 2,048, 1 MNIST image and none (docs/performance.md)."""


def calibration_fields(count: int = COUNT, seed: int = 0, data_dir: str | None = None) -> torch.Tensor:
    """``(count, 28, 28)`` uint8 ink fields from MNIST's training set (``DIGIT_DATA_DIR``)."""
    root = data_dir or checkout.data_dir()
    train = MNIST(root, train=True, download=True)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(train.data), generator=generator)[:count]
    images = train.data[index].unsqueeze(1).float() / 255
    drawn = torch.arange(count) % 2 == 1
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        augment = DrawnDigitAugment(strength=1.0, variant_prob=0.5)
        images[drawn] = augment(images[drawn], train.targets[index][drawn])
    return (images[:, 0] * 255).round().clamp(0, 255).to(torch.uint8)


def int8_ranges(network: nn.Module, data_dir: str | None = None) -> dict[str, torch.Tensor]:
    """The activation ranges of ``network`` as served (``for_inference``) on the calibration
    images; ``network`` itself is left as it is (folding works in place)."""
    images = normalize(calibration_fields(data_dir=data_dir).unsqueeze(1).float() / 255)
    return measure_int8_ranges(for_inference(copy.deepcopy(network)), images)
