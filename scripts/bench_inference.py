"""Benchmark the handler's own work in one process: PNG preprocessing and the forward pass.

    python scripts/bench_inference.py [--model model_store/digit.mar] [--data-dir DIR]

On one torch thread, as the workers run: ``prepare_batch`` on MNIST test PNGs and drawn
canvas PNGs (batches of 8), and the forward pass of the served network at batch 1, 4
and 8, as loaded by ``load_network`` (plain), with channels-last weights and input, and
as served (``for_inference``: batch norms folded into the convolutions, channels-last) in
float32, bfloat16 and int8 (with the activation ranges of the archive's ``calibration.pt``,
or those ``scripts/archive.py`` would put there).
Prints microseconds per image; writes ``logs/bench/inference.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from digit_classifier.bench.inference import (
    BATCH_SIZES,
    accuracy,
    forward_us,
    network_variants,
    prepared_batches,
    preprocessing_us,
)
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.samples import DRAWN_DEV, Sample, drawn_digits, mnist_test_pngs
from digit_classifier.bench.variants import VARIANTS_DIR, evaluation_sets
from digit_classifier.checkout import data_dir
from digit_classifier.runtime.inference import load_network
from digit_classifier.runtime.precision import CALIBRATION_FILE
from digit_classifier.serving.calibration import int8_ranges


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("model_store/digit.mar"))
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per figure")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/inference.json"))
    parser.add_argument(
        "--accuracy",
        action="store_true",
        help="also each precision's accuracy on all MNIST test images, the drawn digits and the variants",
    )
    parser.add_argument("--variants-dir", type=Path, default=VARIANTS_DIR)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    inputs = {"mnist_test": mnist_test_pngs(args.data_dir, args.cache_dir)[:1000]}
    if (args.data_dir / DRAWN_DEV / "index.csv").is_file():
        inputs["drawn_canvas"] = drawn_digits(args.data_dir / DRAWN_DEV)
    result: dict[str, dict[str, float]] = {"preprocess_us_per_image": {}, "forward_us_per_image": {}}
    for name, samples in inputs.items():
        cost = preprocessing_us([sample.path.read_bytes() for sample in samples], args.seconds)
        result["preprocess_us_per_image"][name] = round(cost, 1)
        print(f"preprocess {name:<13} {cost:7.1f} us/image (batches of 8)", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.model) as archive:
            archive.extractall(tmp)
        plain = load_network(tmp)
        shipped = Path(tmp) / CALIBRATION_FILE
        ranges = torch.load(shipped, weights_only=True) if shipped.is_file() else int8_ranges(plain)
    variants = network_variants(plain, ranges)
    for name, (network, channels_last) in variants.items():
        for batch in BATCH_SIZES:
            cost = forward_us(network, batch, channels_last, args.seconds)
            result["forward_us_per_image"][f"{name}_batch{batch}"] = round(cost, 1)
            print(f"forward {name:<14} batch {batch}  {cost:7.1f} us/image", flush=True)
    if args.accuracy:
        result["accuracy"] = served_accuracy(
            variants, evaluation_sets(args.data_dir, args.cache_dir, args.variants_dir)
        )
    write_report(args.report, result)
    return 0


def served_accuracy(variants: dict, sets: dict[str, list[Sample]]) -> dict[str, dict[str, float]]:
    """Accuracy of each served precision on each set, every set decoded once."""
    result: dict[str, dict[str, float]] = {}
    for set_name, samples in sets.items():
        batches = prepared_batches(samples)
        for name, (network, _) in variants.items():
            if name.startswith("served"):
                share = accuracy(network, batches)
                result.setdefault(name, {})[set_name] = round(share, 4)
                print(f"accuracy {name:<16} {set_name:<17} {share:.2%}", flush=True)
    return result


if __name__ == "__main__":
    sys.exit(main())
