"""The handler's own work in one process: PNG preprocessing and the forward pass.

What a TorchServe worker spends per batch on top of TorchServe itself, on one torch thread
as the workers run: ``prepare_batch`` (decode, crop, resize and centre each PNG, then
normalise the batch), and the forward pass of the network as loaded (plain), with
channels-last weights and input, and as served (``for_inference``) in each precision; and
what each precision costs in accuracy, with the served preprocessing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from itertools import count

import torch
from torch import nn

from digit_classifier.bench.samples import Sample
from digit_classifier.runtime.inference import (
    PreparedBatch,
    for_inference,
    predict_probabilities,
    prepare_batch,
)
from digit_classifier.runtime.precision import PRECISIONS, Int8Ranges, input_dtype
from digit_classifier.runtime.preprocessing import IMAGE_SIZE, ImageLimits

BATCH_SIZES = (1, 4, 8)
PREPROCESS_BATCH = 8


def microseconds_per_call(call: Callable[[], object], seconds: float) -> float:
    """Median over ten rounds of the mean time per call, after a warm-up round."""
    call()
    calls = 1
    start = time.perf_counter()
    while time.perf_counter() - start < seconds / 10:
        call()
        calls += 1
    rounds = []
    for _ in range(10):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        rounds.append((time.perf_counter() - start) / calls)
    return sorted(rounds)[len(rounds) // 2] * 1e6


def preprocessing_us(payloads: list[bytes], seconds: float) -> float:
    """Microseconds per image for ``prepare_batch`` over batches of 8 payloads."""
    size = PREPROCESS_BATCH
    batches = [payloads[start : start + size] for start in range(0, len(payloads) - size + 1, size)]
    limits = ImageLimits()
    position = count()

    def one_batch() -> None:
        prepare_batch(batches[next(position) % len(batches)], limits)

    return microseconds_per_call(one_batch, seconds) / size


def forward_us(network: nn.Module, batch: int, channels_last: bool, seconds: float) -> float:
    images = torch.randn(batch, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=input_dtype(network))
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def one_batch() -> None:
        with torch.inference_mode():
            network(images)

    return microseconds_per_call(one_batch, seconds) / batch


def network_variants(plain: nn.Module, ranges: Int8Ranges) -> dict[str, tuple[nn.Module, bool]]:
    """The network as loaded, channels-last, and as served in each precision (with whether its
    input goes channels-last); ``ranges`` are the activation ranges int8 quantises with."""
    variants = {
        "plain": (plain, False),
        "channels_last": (copy.deepcopy(plain).to(memory_format=torch.channels_last), True),
    }
    for precision in PRECISIONS:
        served = for_inference(copy.deepcopy(plain), precision, ranges, BATCH_SIZES)
        variants["served" if precision == "float32" else f"served_{precision}"] = (served, True)
    return variants


def prepared_batches(samples: list[Sample], size: int = 100) -> list[tuple[PreparedBatch, torch.Tensor]]:
    """``samples`` decoded once as the handler decodes them, with the labels of the decodable ones."""
    batches = []
    for start in range(0, len(samples), size):
        chunk = samples[start : start + size]
        batch = prepare_batch([sample.path.read_bytes() for sample in chunk], ImageLimits())
        batches.append((batch, torch.tensor([chunk[position].label for position in batch.positions])))
    return batches


def accuracy(network: nn.Module, batches: list[tuple[PreparedBatch, torch.Tensor]]) -> float:
    """The share of all the batches' requests ``network`` reads right (undecodable ones count wrong)."""
    right = sum(
        int((predict_probabilities(network, batch.images).argmax(1) == labels).sum())
        for batch, labels in batches
    )
    return right / sum(batch.size for batch, _ in batches)
