from __future__ import annotations

import torch
import torch.nn.functional as F

from digit_classifier.training.augment import DrawnDigitAugment, VariantStrokes, affine_grid, ink_boxes


def _strokes() -> torch.Tensor:
    images = torch.zeros(8, 1, 28, 28)
    images[:, :, 6:22, 12:15] = 1.0
    return images


def _labels(digit: int, count: int = 8) -> torch.Tensor:
    return torch.full((count,), digit)


def test_affine_grid_is_torch_affine_grid() -> None:
    theta = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = F.affine_grid(theta, [5, 1, 28, 20], align_corners=False)
    torch.testing.assert_close(affine_grid(theta, 28, 20), expected)


def test_zero_strength_is_the_identity() -> None:
    images = _strokes()
    out = DrawnDigitAugment(strength=0.0)(images, _labels(3))
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_augmentation_keeps_shape_and_range_and_varies_samples() -> None:
    torch.manual_seed(0)
    out = DrawnDigitAugment(variant_prob=0.5)(_strokes(), _labels(7))
    assert out.shape == (8, 1, 28, 28)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], out[1])


def test_thicker_strokes_have_more_ink() -> None:
    torch.manual_seed(0)
    thick = DrawnDigitAugment(rotation=0, scale=0, shear=0, translate=0, thickness_prob=0.5)
    images = _strokes()
    out = thick(images, _labels(1))
    assert (out.sum(dim=(1, 2, 3)) != images.sum(dim=(1, 2, 3))).any()


def test_variant_strokes_only_touch_zeros_ones_and_sevens() -> None:
    torch.manual_seed(0)
    images = _strokes().repeat(2, 1, 1, 1)
    labels = torch.tensor([0, 1, 7, 2, 3, 4, 5, 6, 8, 9, 0, 1, 7, 9, 8, 6])
    out = VariantStrokes(probability=1.0)(images, labels)
    changed = (out - images).abs().sum(dim=(1, 2, 3)) > 0
    assert changed.tolist() == [digit in (0, 1, 7) for digit in labels.tolist()]
    assert (out >= images).all() and out.max() <= 1, "strokes only add ink"


def test_a_slash_crosses_the_zero_from_lower_left_to_upper_right() -> None:
    torch.manual_seed(0)
    ring = torch.zeros(1, 1, 28, 28)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    ring[0, 0] = (((xs - 14) ** 2 / 36 + (ys - 14) ** 2 / 81 - 1).abs() < 0.25).float()
    slashed = VariantStrokes(probability=1.0)(ring, torch.tensor([0]))[0, 0]
    added = slashed - ring[0, 0]
    assert added[12:17, 12:17].sum() > 1, "the slash passes through the middle"
    left_y = (added[:, :14].sum(1) * torch.arange(28.0)).sum() / added[:, :14].sum()
    right_y = (added[:, 14:].sum(1) * torch.arange(28.0)).sum() / added[:, 14:].sum()
    assert left_y > right_y + 4, "it rises from left to right (y grows downwards)"
    assert ink_boxes(ring[:, 0])[0].tolist() == [8.0, 4.0, 20.0, 24.0]


def test_augmentation_is_seeded() -> None:
    augment = DrawnDigitAugment(variant_prob=0.5)
    torch.manual_seed(3)
    first = augment(_strokes(), _labels(0))
    torch.manual_seed(3)
    assert torch.equal(first, augment(_strokes(), _labels(0)))


def test_elastic_displacement_is_bounded_and_keeps_ink() -> None:
    torch.manual_seed(0)
    images = _strokes()
    bent = DrawnDigitAugment(rotation=0, scale=0, shear=0, translate=0, thickness_prob=0, elastic=2.0)(
        images, _labels(3)
    )
    assert not torch.allclose(bent, images, atol=1e-3), "the strokes move"
    assert (bent.sum(dim=(1, 2, 3)) - images.sum(dim=(1, 2, 3))).abs().max() < 0.25 * images[0].sum()
    assert bent[:, :, :3].sum() == 0 and bent[:, :, -3:].sum() == 0, "no ink moves more than 2 pixels"
