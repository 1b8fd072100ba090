from __future__ import annotations

import pytest
import torch
from torch import nn

from digit_classifier.runtime.inference import for_inference
from digit_classifier.runtime.networks import DigitCNN, Dropout, SeedCNN, build_network
from digit_classifier.runtime.precision import GraphPerBatchSize, measure_int8_ranges, quantize_int8


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


def test_dropout_drops_its_share_and_rescales_in_training_only() -> None:
    dropout, ones = Dropout(0.3), torch.ones(200, 500)
    torch.manual_seed(0)
    dropped = dropout(ones)
    assert dropped.unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert (dropped == 0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    assert torch.equal(dropout.eval()(ones), ones)


def test_width_scales_the_default_network() -> None:
    small, large = DigitCNN(width=16), DigitCNN(width=32)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in large.parameters())


@pytest.mark.parametrize("stem_kernel", [3, 5])
def test_a_strided_stem_halves_the_resolution_in_its_convolution(stem_kernel: int) -> None:
    net = DigitCNN(width=8, stem_kernel=stem_kernel).eval()
    stem = net.features[0]
    assert (stem.kernel_size, stem.stride) == ((stem_kernel, stem_kernel), (2, 2))
    assert not isinstance(net.features[1], nn.MaxPool2d)
    assert net.features[:3](torch.zeros(1, 1, 28, 28)).shape == (1, 8, 14, 14)
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_network_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown network 'resnet'"):
        build_network("resnet")


def _with_statistics(network: nn.Module, scale: tuple[float, float]) -> nn.Module:
    torch.manual_seed(0)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(*scale)
            module.bias.data.uniform_(-1, 1)
    return network.eval()


@pytest.mark.parametrize(("pool_first", "stem_kernel"), [(False, 0), (True, 0), (True, 5)])
def test_served_network_folds_its_batch_norms_exactly(pool_first: bool, stem_kernel: int) -> None:
    network = _with_statistics(DigitCNN(8, pool_first=pool_first, stem_kernel=stem_kernel), (0.2, 1.5))
    images = torch.randn(6, 1, 28, 28)
    with torch.inference_mode():
        expected = network(images)
        served = for_inference(network)
        got = served(images.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(module, nn.BatchNorm2d) for module in served.modules())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("pool_first", "stem_kernel"), [(False, 0), (True, 0), (True, 5)])
def test_each_served_relu_follows_its_convolution(pool_first: bool, stem_kernel: int) -> None:
    """What int8 quantisation fuses into one kernel: no folded norm leaves a layer behind,
    and each ReLU that followed a max-pool comes before it."""
    network = _with_statistics(DigitCNN(8, pool_first=pool_first, stem_kernel=stem_kernel), (0.2, 1.5))
    served = for_inference(network)
    layers = [type(layer) for layer in served.features]
    conv, relu, pool = nn.Conv2d, nn.ReLU, nn.MaxPool2d
    stem = [conv, relu] if stem_kernel else [conv, relu, pool]
    assert layers == [*stem, conv, relu, pool, conv, relu, pool]


def test_a_negative_scale_is_not_folded_across_pooling() -> None:
    """max(s * x) != s * max(x) for s < 0, so such a norm stays where it is."""
    network = _with_statistics(DigitCNN(width=8, pool_first=True), (-1.0, 1.0))
    images = torch.randn(6, 1, 28, 28)
    with torch.inference_mode():
        expected = network(images)
        served = for_inference(network)
        got = served(images)
    assert any(isinstance(module, nn.BatchNorm2d) for module in served.modules())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_int8_ranges_from_another_network_are_refused() -> None:
    network = for_inference(DigitCNN(width=8, pool_first=True, stem_kernel=5).eval())
    ranges = measure_int8_ranges(network, torch.rand(16, 1, 28, 28))
    extra = {**ranges, "activation_post_process_99.min_val": torch.tensor(0.0)}
    fewer = dict(list(ranges.items())[:-2])
    for wrong in (extra, fewer):
        with pytest.raises(ValueError, match="measured on another network"):
            quantize_int8(network, wrong)
    assert quantize_int8(network, ranges)(torch.zeros(4, 1, 28, 28)).shape == (4, 10)


def test_int8_graph_per_batch_size_answers_alike_at_every_size() -> None:
    """Each size up to the largest has a graph of its own, called once with that size; any
    size, with a graph of its own or without (6 runs on the largest), gets the same logits."""
    network = for_inference(_with_statistics(DigitCNN(width=8, pool_first=True, stem_kernel=5), (0.2, 1.5)))
    ranges = measure_int8_ranges(network, torch.rand(16, 1, 28, 28))
    served = quantize_int8(network, ranges, batch_sizes=[4, 1, 3, 2])
    assert isinstance(served, GraphPerBatchSize)
    assert sorted(served.graphs) == ["1", "2", "3", "4"]
    images = torch.randn(6, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        whole = served(images)
        for size in range(1, 5):
            torch.testing.assert_close(served(images[:size]), whole[:size], rtol=0, atol=0)
