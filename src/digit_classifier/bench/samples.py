"""The image sets the measurements send: MNIST's test set as PNG files, and drawn digits.

Data lives where ``DIGIT_DATA_DIR`` points (the folder that holds ``MNIST/raw/``, as for
training), else in ``./data``; torchvision downloads MNIST there when it is missing.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

DRAWN_DEV = "drawn-digits-dev"
"""Folder of pen-drawn canvas PNGs under the data folder, with an ``index.csv``."""


@dataclass
class Sample:
    path: Path
    label: int
    groups: dict[str, str] = field(default_factory=dict)
    """What the sample belongs to, for per-group accuracy (for drawn digits: style, source)."""


def mnist_test_pngs(data_dir: Path, cache_dir: Path, download: bool = True) -> list[Sample]:
    """The 10,000 MNIST test images as PNG files in ``cache_dir``, written on first use."""
    index = cache_dir / "index.csv"
    if not index.is_file():
        from PIL import Image
        from torchvision.datasets import MNIST

        test = MNIST(str(data_dir), train=False, download=download)
        cache_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for number, (image, label) in enumerate(zip(test.data.numpy(), test.targets.tolist(), strict=True)):
            name = f"{number:05d}_{label}.png"
            Image.fromarray(image, mode="L").save(cache_dir / name)
            rows.append((name, label))
        partial = index.with_suffix(".tmp")
        with partial.open("w", newline="") as file:
            csv.writer(file).writerows([("path", "label"), *rows])
        partial.replace(index)
    return indexed_samples(index)


def indexed_samples(index: Path) -> list[Sample]:
    """Samples listed in an ``index.csv`` with ``path`` and ``label`` columns (any others
    become the sample's groups); paths are relative to the index's folder."""
    with index.open(newline="") as file:
        return [
            Sample(
                index.parent / row.pop("path"),
                int(row.pop("label")),
                {key: value for key, value in row.items() if value},
            )
            for row in csv.DictReader(file)
        ]


def drawn_digits(drawn_dir: Path) -> list[Sample]:
    return indexed_samples(drawn_dir / "index.csv")
