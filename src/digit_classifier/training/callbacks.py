"""Callbacks: per-epoch reseeding for exact resumes, and TensorBoard pictures."""

from __future__ import annotations

from typing import Any

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from digit_classifier.runtime.networks import NUM_CLASSES
from digit_classifier.runtime.preprocessing import MNIST_MEAN, MNIST_STD


def _tensorboard(trainer: Trainer) -> SummaryWriter | None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _to_display(images: torch.Tensor) -> torch.Tensor:
    return (images.float() * MNIST_STD + MNIST_MEAN).clamp(0, 1)


class EpochSeed(Callback):
    """Reseed every generator at the start of each training epoch from ``seed`` and the epoch.

    Augmentation and dropout then depend only on (seed, epoch, rank), so a run resumed
    from an epoch-end checkpoint continues exactly as the uninterrupted run would have.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch_seed = self.seed + 1000 * trainer.current_epoch + trainer.global_rank
        seed_everything(epoch_seed, workers=True, verbose=False)


class ExampleImages(Callback):
    """Log a grid of training digits as the network sees them, after augmentation."""

    def __init__(self, count: int = 64) -> None:
        self.count = count
        self._logged = False

    @rank_zero_only
    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        writer = _tensorboard(trainer)
        if self._logged or writer is None:
            return
        images = _to_display(batch[0][: self.count].detach().cpu())
        writer.add_image("examples/train_batch", make_grid(images, nrow=8, pad_value=0.5), 0)
        self._logged = True


class ValidationReport(Callback):
    """After each validation epoch, log the confusion matrix and misclassified digits."""

    def __init__(self, max_misclassified: int = 32) -> None:
        self.max_misclassified = max_misclassified
        self.confusion = MulticlassConfusionMatrix(num_classes=NUM_CLASSES)
        self.wrong: list[tuple[torch.Tensor, int, int]] = []

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.confusion = self.confusion.to(pl_module.device)
        self.confusion.reset()
        self.wrong = []

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        images, targets = batch
        preds = outputs["preds"]
        self.confusion.update(preds, targets)
        room = self.max_misclassified - len(self.wrong)
        for index in (preds != targets).nonzero().squeeze(1)[:room].tolist():
            self.wrong.append((images[index].cpu(), int(preds[index]), int(targets[index])))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        matrix = self.confusion.compute()  # on every rank: under DDP this gathers all ranks
        writer = _tensorboard(trainer)
        if writer is None or not trainer.is_global_zero:
            return
        step = trainer.global_step
        figure = Figure(figsize=(6.4, 4.8))
        self.confusion.plot(val=matrix, ax=figure.subplots(), add_text=True)
        writer.add_figure("val/confusion_matrix", figure, step)
        if self.wrong:
            writer.add_figure("val/misclassified", self._misclassified_figure(), step)

    def _misclassified_figure(self) -> Figure:
        """Built on a bare ``Figure``, which needs no pyplot backend (TensorBoard renders it)."""
        columns = 8
        rows = (len(self.wrong) + columns - 1) // columns
        figure = Figure(figsize=(columns * 1.2, rows * 1.4))
        axes = figure.subplots(rows, columns, squeeze=False)
        for axis in axes.flat:
            axis.axis("off")
        for axis, (image, pred, target) in zip(axes.flat, self.wrong, strict=False):
            axis.imshow(_to_display(image)[0], cmap="gray", vmin=0, vmax=1)
            axis.set_title(f"pred {pred} / true {target}", fontsize=7, color="red")
        figure.tight_layout()
        return figure
