"""Benchmark the handler's own work in one process: PNG preprocessing and the forward pass.

    python scripts/bench_inference.py [--model model_store/digit.mar] [--data-dir ../shared/data]

What a TorchServe worker spends per batch on top of TorchServe itself, on one torch thread
as the workers run: ``prepare_batch`` (decode, crop, resize and centre each PNG, then
normalise the batch) on MNIST test PNGs and drawn canvas PNGs, and the forward pass of the
served network at batch 1, 4 and 8, as loaded by ``load_network`` (plain), with
channels-last weights and input, and as served (``for_inference``: batch norms folded
into the convolutions, channels-last). Prints microseconds per image; writes
``logs/bench/inference.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from eval_serving import drawn_digits, mnist_test_pngs  # noqa: E402

from digit_classifier.inference import for_inference, load_network, prepare_batch  # noqa: E402
from digit_classifier.preprocessing import ImageLimits  # noqa: E402

BATCH_SIZES = (1, 4, 8)


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


def preprocessing(payloads: list[bytes], seconds: float) -> float:
    """Microseconds per image for ``prepare_batch`` over batches of 8 payloads."""
    batches = [payloads[start : start + 8] for start in range(0, len(payloads) - 7, 8)]
    limits = ImageLimits()
    position = iter(range(10**9))

    def one_batch() -> None:
        prepare_batch(batches[next(position) % len(batches)], limits)

    return microseconds_per_call(one_batch, seconds) / 8


def forward(network: torch.nn.Module, batch: int, channels_last: bool, seconds: float) -> float:
    images = torch.randn(batch, 1, 28, 28)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def one_batch() -> None:
        with torch.inference_mode():
            network(images)

    return microseconds_per_call(one_batch, seconds) / batch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=ROOT / "model_store" / "digit.mar")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "mnist-test-png")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per figure")
    parser.add_argument("--report", type=Path, default=ROOT / "logs" / "bench" / "inference.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    inputs = {"mnist_test": mnist_test_pngs(args.data_dir, args.cache_dir)[:1000]}
    drawn_dir = args.data_dir / "drawn-digits-dev"
    if (drawn_dir / "index.csv").is_file():
        inputs["drawn_canvas"] = drawn_digits(drawn_dir)
    result: dict[str, dict[str, float]] = {"preprocess_us_per_image": {}, "forward_us_per_image": {}}
    for name, samples in inputs.items():
        cost = preprocessing([sample.path.read_bytes() for sample in samples], args.seconds)
        result["preprocess_us_per_image"][name] = round(cost, 1)
        print(f"preprocess {name:<13} {cost:7.1f} us/image (batches of 8)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.model) as archive:
            archive.extractall(tmp)
        plain = load_network(tmp)
    variants = {
        "plain": (plain, False),
        "channels_last": (copy.deepcopy(plain).to(memory_format=torch.channels_last), True),
        "served": (for_inference(copy.deepcopy(plain)), True),
    }
    for name, (network, channels_last) in variants.items():
        for batch in BATCH_SIZES:
            cost = forward(network, batch, channels_last, args.seconds)
            result["forward_us_per_image"][f"{name}_batch{batch}"] = round(cost, 1)
            print(f"forward {name:<14} batch {batch}  {cost:7.1f} us/image", flush=True)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
