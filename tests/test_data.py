"""The data module on the real MNIST files."""

from __future__ import annotations

import torch
from conftest import DATA_DIR, requires_mnist

from digit_classifier.training.data import EpochShuffleSampler, MNISTDataModule, TensorBatchDataset


def test_epoch_shuffle_depends_only_on_seed_and_epoch() -> None:
    data = TensorBatchDataset(torch.arange(100))
    first, again = EpochShuffleSampler(data, seed=3), EpochShuffleSampler(data, seed=3)
    first.set_epoch(2)
    again.set_epoch(2)
    assert list(first) == list(again)
    again.set_epoch(3)
    assert list(first) != list(again)
    assert sorted(first) == list(range(100))


@requires_mnist
def test_split_sizes_and_seeded_disjoint_split() -> None:
    datamodule = MNISTDataModule(data_dir=DATA_DIR, download=False)
    datamodule.setup("fit")
    datamodule.setup("test")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (
        55_000,
        5_000,
        10_000,
    )
    other = MNISTDataModule(data_dir=DATA_DIR, download=False)
    other.setup("fit")
    assert torch.equal(datamodule.val_set.tensors[0], other.val_set.tensors[0])
    train_images = {bytes(x.numpy()) for x in datamodule.train_set.tensors[0][:5000]}
    assert not any(bytes(x.numpy()) in train_images for x in datamodule.val_set.tensors[0])


@requires_mnist
def test_batches_arrive_normalised() -> None:
    datamodule = MNISTDataModule(data_dir=DATA_DIR, download=False, eval_batch_size=5000)
    datamodule.setup("fit")
    images, targets = next(iter(datamodule.val_dataloader()))
    assert images.dtype == torch.uint8 and images.shape == (5000, 28, 28)
    images, targets = datamodule.on_after_batch_transfer((images, targets), 0)
    assert images.shape == (5000, 1, 28, 28) and images.dtype == torch.float32
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05


def test_the_last_clean_epochs_are_not_augmented() -> None:
    """``clean_epochs`` trains the last epochs on MNIST as it is."""
    from types import SimpleNamespace

    from digit_classifier.training.augment import DrawnDigitAugment

    datamodule = MNISTDataModule(augment=DrawnDigitAugment(), clean_epochs=2)
    batch = (torch.zeros(4, 28, 28, dtype=torch.uint8), torch.zeros(4, dtype=torch.long))
    batch[0][:, 8:20, 12:16] = 255
    plain = datamodule.model_input(batch)[0]
    seen = {}
    for epoch in range(5):
        datamodule.trainer = SimpleNamespace(training=True, current_epoch=epoch, max_epochs=5)
        torch.manual_seed(epoch)
        seen[epoch] = torch.equal(datamodule.on_after_batch_transfer(batch, 0)[0], plain)
    assert seen == {0: False, 1: False, 2: False, 3: True, 4: True}
