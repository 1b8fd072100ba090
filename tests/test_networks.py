from __future__ import annotations

import pytest
import torch
from torch import nn

from digit_classifier.runtime.networks import DigitCNN, SeedCNN, build_network


def test_seed_cnn_matches_the_seed_app() -> None:
    net = SeedCNN()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 6, (5, 5)),
        (6, 16, (5, 5)),
    ]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(256, 120), (120, 84), (84, 10)]


@pytest.mark.parametrize("name", ["seed_cnn", "digit_cnn"])
def test_networks_map_digits_to_ten_logits(name: str) -> None:
    net = build_network(name).eval()
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_width_scales_the_default_network() -> None:
    small, large = DigitCNN(width=16), DigitCNN(width=32)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in large.parameters())


def test_unknown_network_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown network 'resnet'"):
        build_network("resnet")
