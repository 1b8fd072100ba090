"""Training input throughput: torchvision's PIL image per sample against batch-wise tensors."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from digit_classifier.runtime.preprocessing import MNIST_MEAN, MNIST_STD
from digit_classifier.training.augment import DrawnDigitAugment
from digit_classifier.training.data import MNISTDataModule

Batch = tuple[torch.Tensor, torch.Tensor]


def images_per_second(
    batches: Iterable[Batch], prepare: Callable[[Batch], Batch] = lambda batch: batch
) -> float:
    """One pass over ``batches``, each turned into network input by ``prepare``."""
    count, start = 0, time.perf_counter()
    for batch in batches:
        images, _ = prepare(batch)
        count += images.shape[0]
    return count / (time.perf_counter() - start)


def pil_per_sample(data_dir: str, batch_size: int) -> float:
    """torchvision's usual path: ``MNIST(transform=ToTensor+Normalize)``, shuffled."""
    normalise = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    dataset = MNIST(data_dir, train=True, transform=normalise)
    return images_per_second(DataLoader(dataset, batch_size=batch_size, shuffle=True))


def tensors(data_dir: str, batch_size: int, augment: bool) -> float:
    """``MNISTDataModule``: one gather per batch, converted (and augmented) batch-wise."""
    datamodule = MNISTDataModule(
        data_dir=data_dir, batch_size=batch_size, augment=DrawnDigitAugment() if augment else None
    )
    datamodule.setup("fit")
    return images_per_second(
        datamodule.train_dataloader(), lambda batch: datamodule.model_input(batch, augment=augment)
    )


def compare(data_dir: str, batch_size: int) -> dict[str, float]:
    torch.manual_seed(0)
    return {
        "pil_per_sample": pil_per_sample(data_dir, batch_size),
        "tensors": tensors(data_dir, batch_size, augment=False),
        "tensors_augmented": tensors(data_dir, batch_size, augment=True),
    }
