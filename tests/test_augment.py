from __future__ import annotations

import torch

from digit_classifier.training.augment import DrawnDigitAugment


def _strokes() -> torch.Tensor:
    images = torch.zeros(8, 1, 28, 28)
    images[:, :, 6:22, 12:15] = 1.0
    return images


def test_zero_strength_is_the_identity() -> None:
    images = _strokes()
    torch.testing.assert_close(DrawnDigitAugment(strength=0.0)(images), images, atol=1e-5, rtol=0)


def test_augmentation_keeps_shape_and_range_and_varies_samples() -> None:
    torch.manual_seed(0)
    out = DrawnDigitAugment()(_strokes())
    assert out.shape == (8, 1, 28, 28)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out[0], out[1])


def test_thicker_strokes_have_more_ink() -> None:
    torch.manual_seed(0)
    thick = DrawnDigitAugment(rotation=0, scale=0, shear=0, translate=0, thickness_prob=0.5)
    images = _strokes()
    out = thick(images)
    assert (out.sum(dim=(1, 2, 3)) != images.sum(dim=(1, 2, 3))).any()
