"""Batch augmentation that imitates hand-drawn canvas digits.

Works on a whole batch of ``[0, 1]`` ink images at once (one ``grid_sample`` call and
two pooling calls), on whatever device the batch is on, so it costs little next to the
training step and needs no per-sample PIL work.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DrawnDigitAugment(nn.Module):
    """Random rotation, scale, shear, shift and stroke thickness, scaled by ``strength``.

    Args:
        rotation: maximum rotation in degrees.
        scale: maximum relative change of size (0.15 means 0.85x to 1.15x).
        shear: maximum shear in degrees.
        translate: maximum shift as a fraction of the image side.
        thickness_prob: probability of making the strokes thicker, and again of making
            them thinner (so ``1 - 2 * thickness_prob`` keeps them as they are).
        strength: multiplies every magnitude and probability above; 0 turns it off.
    """

    def __init__(
        self,
        rotation: float = 15.0,
        scale: float = 0.15,
        shear: float = 10.0,
        translate: float = 0.08,
        thickness_prob: float = 0.2,
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        self.rotation = math.radians(rotation * strength)
        self.scale = scale * strength
        self.shear = math.radians(shear * strength)
        self.translate = translate * strength
        self.thickness_prob = min(thickness_prob * strength, 0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.thickness_prob > 0:
            images = self._vary_thickness(images)
        return self._affine(images)

    def _uniform(self, n: int, limit: float, like: torch.Tensor) -> torch.Tensor:
        return (torch.rand(n, device=like.device, dtype=like.dtype) * 2 - 1) * limit

    def _affine(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        angle = self._uniform(n, self.rotation, images)
        shear = self._uniform(n, self.shear, images)
        zoom = 1 + self._uniform(n, self.scale, images)
        shift = torch.stack([self._uniform(n, 2 * self.translate, images) for _ in range(2)], 1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        # grid_sample maps output to input coordinates, hence the inverse zoom.
        theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
        theta[:, 0, 0] = cos / zoom
        theta[:, 0, 1] = (-sin + torch.tan(shear) * cos) / zoom
        theta[:, 1, 0] = sin / zoom
        theta[:, 1, 1] = cos / zoom
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _vary_thickness(self, images: torch.Tensor) -> torch.Tensor:
        choice = torch.rand(images.shape[0], 1, 1, 1, device=images.device)
        thicker = F.max_pool2d(images, kernel_size=3, stride=1, padding=1)
        eroded = -F.max_pool2d(-images, kernel_size=3, stride=1, padding=1)
        thinner = torch.maximum(eroded, 0.5 * images)
        return torch.where(
            choice < self.thickness_prob,
            thicker,
            torch.where(choice < 2 * self.thickness_prob, thinner, images),
        )
