"""The training callbacks' own arithmetic, without a training run."""

from __future__ import annotations

import pytest
import torch

from digit_classifier.training.callbacks import ema_update


def test_weight_average_decay_warms_up_then_holds_at_its_cap() -> None:
    update = ema_update(decay=0.9, warmup=3.0)
    steps = torch.ones(1, dtype=torch.long)
    average = [torch.zeros(1), torch.zeros(1, dtype=torch.long)]
    update(average, [torch.ones(1), steps], torch.tensor(1))
    assert average[0].item() == pytest.approx(0.5)
    assert average[1].item() == 1
    update(average, [torch.full((1,), 2.0), steps], torch.tensor(1000))
    assert average[0].item() == pytest.approx(0.9 * 0.5 + 0.1 * 2)


def test_weight_average_without_warmup_holds_its_decay_from_the_first_update() -> None:
    update = ema_update(decay=0.9, warmup=1.0)
    average = [torch.zeros(1)]
    update(average, [torch.ones(1)], torch.tensor(1))
    assert average[0].item() == pytest.approx(0.1)


def test_weight_average_refuses_a_warmup_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match="warmup"):
        ema_update(warmup=0.0)
