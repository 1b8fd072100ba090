"""Benchmark: one epoch of MNIST batches through PIL per sample vs decoded-once tensors.

    python scripts/bench_data.py --data-dir ../shared/data

Prints images per second for torchvision's usual ``MNIST(transform=ToTensor+Normalize)``
path and for ``MNISTDataModule`` (tensors indexed directly, whole batches converted and
normalised at once), with and without the default augmentation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable

import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from digit_classifier.augment import DrawnDigitAugment
from digit_classifier.data import MNISTDataModule
from digit_classifier.preprocessing import MNIST_MEAN, MNIST_STD


def images_per_second(batches: Iterable, prepare: Callable = lambda batch: batch) -> float:
    count, start = 0, time.perf_counter()
    for batch in batches:
        images, _ = prepare(batch)
        count += images.shape[0]
    return count / (time.perf_counter() - start)


class _Training:
    training = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)

    pil_set = MNIST(
        args.data_dir,
        train=True,
        transform=transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
        ),
    )
    results = {
        "pil_per_sample": images_per_second(DataLoader(pil_set, batch_size=args.batch_size, shuffle=True))
    }
    for name, augment in (("tensors", None), ("tensors_augmented", DrawnDigitAugment())):
        datamodule = MNISTDataModule(data_dir=args.data_dir, batch_size=args.batch_size, augment=augment)
        datamodule.setup("fit")
        datamodule.trainer = _Training()  # what on_after_batch_transfer checks to augment
        results[name] = images_per_second(
            datamodule.train_dataloader(), lambda batch, dm=datamodule: dm.on_after_batch_transfer(batch, 0)
        )
    for name, rate in results.items():
        print(f"{name:>20}: {rate:10,.0f} images/s ({rate / results['pil_per_sample']:.1f}x)")
    print(json.dumps({name: round(rate) for name, rate in results.items()}))


if __name__ == "__main__":
    main()
