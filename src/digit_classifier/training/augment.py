"""Batch augmentation that imitates hand-drawn canvas digits.

Works on a whole batch of ``[0, 1]`` ink images at once, on whatever device the batch is
on, so it costs little next to the training step and needs no per-sample PIL work:

* the strokes people add that MNIST's writers rarely did (:class:`VariantStrokes`): a slash
  through a 0, a crossbar on a 7, a flag and a foot on a 1;
* stroke thickness (two pooling calls on the images chosen);
* a random affine warp (one ``grid_sample``): rotation, scale, shear, shift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Segments = tuple[torch.Tensor, torch.Tensor]
"""Segment start and end points, ``(N, 2)`` each, in pixels (x, y)."""


def _uniform(like: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(like.shape[0], device=like.device, dtype=like.dtype)


def ink_boxes(ink: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """``(N, 4)`` ink bounding boxes ``(left, top, right, bottom)`` of ``(N, H, W)`` images."""
    height, width = ink.shape[-2:]
    rows, cols = (ink > threshold).any(dim=2), (ink > threshold).any(dim=1)
    top = rows.float().argmax(dim=1)
    bottom = height - 1 - rows.flip(1).float().argmax(dim=1)
    left = cols.float().argmax(dim=1)
    right = width - 1 - cols.flip(1).float().argmax(dim=1)
    return torch.stack([left, top, right, bottom], dim=1).to(ink.dtype)


def ink_x_at(ink: torch.Tensor, y: torch.Tensor, band: float = 1.5) -> torch.Tensor:
    """The mean x of each image's ink in the rows within ``band`` of its ``y``."""
    rows = torch.arange(ink.shape[-2], device=ink.device, dtype=ink.dtype)
    weights = (1 - (rows[None, :] - y[:, None]).abs() / band).clamp(min=0)
    profile = (ink * weights[:, :, None]).sum(dim=1)
    cols = torch.arange(ink.shape[-1], device=ink.device, dtype=ink.dtype)
    return (profile * cols).sum(dim=1) / profile.sum(dim=1).clamp(min=1e-6)


def draw_segments(ink: torch.Tensor, segments: list[Segments], width: torch.Tensor) -> torch.Tensor:
    """``ink`` with antialiased segments of the given pen ``width`` (per image) drawn on."""
    height, side = ink.shape[-2:]
    ys = torch.arange(height, device=ink.device, dtype=ink.dtype)[:, None]
    xs = torch.arange(side, device=ink.device, dtype=ink.dtype)[None, :]
    pixels = torch.stack(torch.broadcast_tensors(xs, ys), dim=-1)[None]
    for start, end in segments:
        direction = (end - start)[:, None, None, :]
        offset = pixels - start[:, None, None, :]
        along = (offset * direction).sum(-1) / (direction * direction).sum(-1).clamp(min=1e-6)
        nearest = start[:, None, None, :] + along.clamp(0, 1)[..., None] * direction
        distance = (pixels - nearest).norm(dim=-1)
        stroke = (width[:, None, None] / 2 + 0.5 - distance).clamp(0, 1)
        ink = torch.maximum(ink, stroke)
    return ink


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``F.affine_grid(theta, (N, C, height, width), align_corners=False)`` as broadcast
    multiply-adds: the same grid to float rounding, without the batch of 3x2 matrix products
    that made it a fifth of the augmentation's time here (docs/performance.md)."""
    options = {"device": theta.device, "dtype": theta.dtype}
    xs = (torch.arange(width, **options) * 2 + 1) / width - 1
    ys = (torch.arange(height, **options) * 2 + 1) / height - 1
    columns = theta[:, None, None]
    return columns[..., 0] * xs[:, None] + columns[..., 1] * ys[:, None, None] + columns[..., 2]


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, round(2 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


class VariantStrokes(nn.Module):
    """Draw, on a ``probability`` of the 0s, 1s and 7s, the stroke many people add.

    Ø (a slash from below the lower left to above the upper right), 7 with a crossbar a
    little below the middle of its stem, 1 with a flag down-left from its top and, on most, a
    foot across its base. Lengths follow the digit's ink box; the pen is 1.6 to 2.8 pixels
    wide, like MNIST's strokes. The labels do not change.
    """

    def __init__(self, probability: float = 0.3) -> None:
        super().__init__()
        self.probability = probability

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        drawn = {0: self._slash, 7: self._crossbar, 1: self._flag_and_foot}
        chosen = torch.rand(targets.shape[0], device=targets.device) < self.probability
        images = images.clone()
        for digit, strokes in drawn.items():
            index = (chosen & (targets == digit)).nonzero().squeeze(1)
            if index.numel():
                ink = images[index, 0]
                box = ink_boxes(ink)
                images[index, 0] = draw_segments(ink, strokes(ink, box), _uniform(box, 1.6, 2.8))
        return images

    @staticmethod
    def _slash(ink: torch.Tensor, box: torch.Tensor) -> list[Segments]:
        left, top, right, bottom = box.unbind(1)
        width, height = right - left, bottom - top
        start = torch.stack(
            [left - _uniform(box, -0.05, 0.2) * width, bottom + _uniform(box, -0.05, 0.2) * height], 1
        )
        end = torch.stack(
            [right + _uniform(box, -0.05, 0.2) * width, top - _uniform(box, -0.05, 0.2) * height], 1
        )
        return [(start, end)]

    @staticmethod
    def _crossbar(ink: torch.Tensor, box: torch.Tensor) -> list[Segments]:
        left, top, right, bottom = box.unbind(1)
        y = top + _uniform(box, 0.4, 0.65) * (bottom - top)
        x = ink_x_at(ink, y)
        half = torch.maximum(_uniform(box, 0.18, 0.35) * (right - left), 0.12 * (bottom - top))
        tilt = torch.tan(torch.deg2rad(_uniform(box, -8, 8))) * half
        start = torch.stack([x - half * _uniform(box, 0.7, 1.3), y + tilt], 1)
        return [(start, torch.stack([x + half, y - tilt], 1))]

    @staticmethod
    def _flag_and_foot(ink: torch.Tensor, box: torch.Tensor) -> list[Segments]:
        _, top, _, bottom = box.unbind(1)
        height = bottom - top
        top_x, bottom_x = ink_x_at(ink, top + 0.5), ink_x_at(ink, bottom - 0.5)
        flag = torch.stack(
            [top_x - _uniform(box, 0.15, 0.38) * height, top + _uniform(box, 0.1, 0.32) * height], 1
        )
        half = _uniform(box, 0.12, 0.26) * height
        foot = (torch.rand_like(half) < 0.7).to(half.dtype)
        start = torch.stack([bottom_x - half * foot, bottom], 1)
        return [
            (flag, torch.stack([top_x, top], 1)),
            (start, torch.stack([bottom_x + half * foot, bottom], 1)),
        ]


class DrawnDigitAugment(nn.Module):
    """Variant strokes, stroke thickness and a random affine warp, all scaled by ``strength``.

    Args:
        rotation: maximum rotation in degrees.
        scale: maximum relative change of size (0.15 means 0.85x to 1.15x).
        shear: maximum shear in degrees.
        translate: maximum shift as a fraction of the image side.
        thickness_prob: probability of making the strokes thicker, and again of making
            them thinner (so ``1 - 2 * thickness_prob`` keeps them as they are).
        variant_prob: probability that a 0, 1 or 7 gets its variant stroke (not scaled).
        elastic: largest elastic displacement in pixels (0 turns it off): a random field,
            smoothed over ``elastic_sigma`` pixels, bends the strokes as a hand does
            (Simard et al., 2003).
        elastic_sigma: the smoothness of that field, in pixels.
        strength: multiplies every magnitude and the thickness probability; 0 turns those off.
    """

    def __init__(
        self,
        rotation: float = 15.0,
        scale: float = 0.15,
        shear: float = 10.0,
        translate: float = 0.08,
        thickness_prob: float = 0.2,
        variant_prob: float = 0.0,
        elastic: float = 0.0,
        elastic_sigma: float = 4.0,
        strength: float = 1.0,
    ) -> None:
        super().__init__()
        self.rotation = math.radians(rotation * strength)
        self.scale = scale * strength
        self.shear = math.radians(shear * strength)
        self.translate = translate * strength
        self.thickness_prob = min(thickness_prob * strength, 0.5)
        self.variants = VariantStrokes(variant_prob) if variant_prob > 0 else None
        self.elastic = elastic * strength
        self.register_buffer("smoothing", _gaussian_kernel(elastic_sigma), persistent=False)

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.variants is not None:
            images = self.variants(images, targets)
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
        grid = affine_grid(theta, *images.shape[-2:])
        if self.elastic > 0:
            grid = grid + self._displacement(images)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def _displacement(self, images: torch.Tensor) -> torch.Tensor:
        """A smooth random field of at most ``elastic`` pixels, in ``grid_sample`` units."""
        n, _, height, width = images.shape
        noise = torch.rand(n * 2, 1, height, width, device=images.device, dtype=images.dtype) * 2 - 1
        kernel = self.smoothing.to(images.dtype)
        pad = kernel.shape[-1] // 2
        field = F.conv2d(F.pad(noise, (pad, pad, 0, 0), mode="reflect"), kernel[None, None, None, :])
        field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="reflect"), kernel[None, None, :, None])
        field = field / field.abs().amax(dim=(2, 3), keepdim=True).clamp(min=1e-6)
        scale = torch.tensor([2 / width, 2 / height], device=images.device, dtype=images.dtype)
        return field.view(n, 2, height, width).permute(0, 2, 3, 1) * self.elastic * scale

    def _vary_thickness(self, images: torch.Tensor) -> torch.Tensor:
        """Dilate a ``thickness_prob`` of the images and erode as many, pooling only those."""
        choice = torch.rand(images.shape[0], device=images.device)
        thicker = (choice < self.thickness_prob).nonzero().squeeze(1)
        thinner = ((choice >= self.thickness_prob) & (choice < 2 * self.thickness_prob)).nonzero().squeeze(1)
        images = images.clone()
        images[thicker] = F.max_pool2d(images[thicker], kernel_size=3, stride=1, padding=1)
        picked = images[thinner]
        eroded = -F.max_pool2d(-picked, kernel_size=3, stride=1, padding=1)
        images[thinner] = torch.maximum(eroded, 0.5 * picked)
        return images
