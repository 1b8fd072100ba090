"""Benchmark: one epoch of MNIST batches through PIL per sample vs decoded-once tensors.

    python scripts/bench_data.py [--data-dir DIR]

Prints images per second for torchvision's usual ``MNIST(transform=ToTensor+Normalize)``
path and for ``MNISTDataModule`` (tensors indexed directly, whole batches converted and
normalised at once), with and without the default augmentation.
"""

from __future__ import annotations

import argparse
import json

from digit_classifier.bench.data import compare
from digit_classifier.checkout import data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(data_dir()), help="holds MNIST/raw")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    results = compare(args.data_dir, args.batch_size)
    for name, rate in results.items():
        print(f"{name:>20}: {rate:10,.0f} images/s ({rate / results['pil_per_sample']:.1f}x)")
    print(json.dumps({name: round(rate) for name, rate in results.items()}))


if __name__ == "__main__":
    main()
