"""MNIST as a LightningDataModule, decoded once into uint8 tensors.

torchvision's ``MNIST`` already holds the whole set as one ``uint8`` tensor; indexing it
through ``__getitem__`` would build a PIL image per sample per epoch. We index the tensor
directly instead and convert, augment and normalise whole batches after they reach the
device (``on_after_batch_transfer``), which is several times faster on a CPU
(``scripts/bench_data.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from lightning import LightningDataModule
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from torchvision.datasets import MNIST

from digit_classifier.runtime.preprocessing import normalize


class TensorBatchDataset(TensorDataset):
    """A ``TensorDataset`` that hands the DataLoader a whole batch with one gather.

    ``DataLoader`` calls ``__getitems__`` with a batch's indices when it exists, so a batch
    costs one tensor index per tensor instead of one per sample plus a collate.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(tensor[index] for tensor in self.tensors)


def _batch_as_is(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


class EpochShuffleSampler(RandomSampler):
    """A random order that depends only on ``seed`` and the epoch.

    Lightning calls ``set_epoch`` before every epoch, so a run resumed from a checkpoint
    sees exactly the orders the uninterrupted run would have seen. Being a
    ``RandomSampler``, Lightning swaps it for a seeded ``DistributedSampler`` under DDP.
    """

    def __init__(self, data_source: TensorDataset, seed: int) -> None:
        super().__init__(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(len(self.data_source), generator=generator).tolist())


class MNISTDataModule(LightningDataModule):
    """MNIST with a seeded 55,000/5,000 train/validation split and the 10,000 test set.

    Batches arrive as ``uint8`` images of shape ``(B, 28, 28)``; ``on_after_batch_transfer``
    turns them into normalised ``(B, 1, 28, 28)`` floats, augmenting training batches.
    """

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 256,
        eval_batch_size: int = 1000,
        val_size: int = 5000,
        split_seed: int = 12345,
        shuffle_seed: int = 0,
        num_workers: int = 0,
        download: bool = True,
        augment: nn.Module | None = None,
        clean_epochs: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["augment"])
        self.augment = augment or None
        self.train_set: TensorBatchDataset | None = None
        self.val_set: TensorBatchDataset | None = None
        self.test_set: TensorBatchDataset | None = None

    def prepare_data(self) -> None:
        for train in (True, False):
            MNIST(self.hparams.data_dir, train=train, download=self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            full = MNIST(self.hparams.data_dir, train=True, download=False)
            order = torch.randperm(
                len(full.data), generator=torch.Generator().manual_seed(self.hparams.split_seed)
            )
            val_index, train_index = order[: self.hparams.val_size], order[self.hparams.val_size :]
            self.train_set = TensorBatchDataset(full.data[train_index], full.targets[train_index])
            self.val_set = TensorBatchDataset(full.data[val_index], full.targets[val_index])
        if self.test_set is None and stage in (None, "test"):
            test = MNIST(self.hparams.data_dir, train=False, download=False)
            self.test_set = TensorBatchDataset(test.data, test.targets)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        sampler = EpochShuffleSampler(self.train_set, self.hparams.shuffle_seed)
        return self._loader(self.train_set, self.hparams.batch_size, sampler=sampler, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None
        return self._loader(self.val_set, self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        assert self.test_set is not None
        return self._loader(self.test_set, self.hparams.eval_batch_size)

    def _loader(self, dataset: TensorDataset, batch_size: int, **kwargs) -> DataLoader:
        """A loader with a private generator: creating its iterator would otherwise draw
        from the global RNG at a point that differs between a fresh and a resumed run."""
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(self.hparams.shuffle_seed),
            collate_fn=_batch_as_is,
            **kwargs,
        )

    def on_after_batch_transfer(
        self, batch: tuple[torch.Tensor, torch.Tensor], dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        trainer = self.trainer
        augmenting = trainer is not None and trainer.training
        if augmenting and self.hparams.clean_epochs and trainer.max_epochs:
            augmenting = trainer.current_epoch < trainer.max_epochs - self.hparams.clean_epochs
        return self.model_input(batch, augment=augmenting)

    def model_input(
        self, batch: tuple[torch.Tensor, torch.Tensor], augment: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A loader's ``uint8`` batch as the network's input: ``(B, 1, 28, 28)`` floats,
        augmented when ``augment`` (training batches) and normalised."""
        images, targets = batch
        images = images.unsqueeze(1).float().div_(255)
        if augment and self.augment is not None:
            images = self.augment(images, targets)
        return normalize(images), targets
