"""The LightningModule: a network from ``networks``, cross-entropy, torchmetrics."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from digit_classifier.runs import TEST_ACC, TEST_LOSS, VAL_ACC, VAL_ACC_BEST, VAL_LOSS
from digit_classifier.runtime.networks import NUM_CLASSES, build_network


def _accuracy() -> MulticlassAccuracy:
    """Top-1 accuracy; inputs are argmax predictions and dataset labels, so not re-validated."""
    return MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro", validate_args=False)


class DigitClassifier(LightningModule):
    """Classifies normalised ``(B, 1, 28, 28)`` digits.

    Args:
        net: the network's name and keyword arguments for ``build_network``; kept as a
            plain dict in the checkpoint so export needs neither Hydra nor unpickling.
        optimizer: a partial that takes the parameters (Hydra ``_partial_: true``);
            only needed for training.
        scheduler: a partial that takes the optimizer, or None. A ``total_steps`` or
            ``T_max`` argument is filled with the run's number of optimiser steps.
        label_smoothing: passed to the cross-entropy loss.
        channels_last: store activations NHWC, which is faster for convolutions on CPU.
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: Callable[..., Optimizer] | None = None,
        scheduler: Callable[..., LRScheduler] | None = None,
        label_smoothing: float = 0.0,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.net = build_network(**net)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net.to(memory_format=self.memory_format)

        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.train_acc, self.val_acc, self.test_acc = (_accuracy() for _ in range(3))
        self.val_acc_best = MaxMetric()
        self.test_confusion = MulticlassConfusionMatrix(num_classes=NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, targets = batch
        logits = self(images)
        loss = F.cross_entropy(logits, targets, label_smoothing=self.hparams.label_smoothing)
        return {"loss": loss, "preds": logits.argmax(dim=1)}

    def on_train_start(self) -> None:
        self.val_acc_best.reset()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Metrics only update here; their epoch values are logged by ``on_train_epoch_end``.

        The step loss is logged only on the steps whose values Lightning writes to the
        logger (every ``trainer.log_every_n_steps``): in Lightning 2.6 each ``self.log``
        call moves and re-checks its stored result, which was the largest cost Lightning
        added to a small network's step (docs/performance.md). The progress bar's loss
        refreshes at the same rate.
        """
        out = self._shared_step(batch)
        loss = out["loss"].detach()
        self.train_loss.update(loss)
        self.train_acc.update(out["preds"], batch[1])
        if self._logger_writes_this_step():
            self.log("train/loss_step", loss, prog_bar=True)
        return out["loss"]

    def _logger_writes_this_step(self) -> bool:
        """Lightning's own rule: a step's values are written when its number, counted from
        1, is a multiple of ``log_every_n_steps`` (``global_step`` counts from 0)."""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.trainer.global_step + 1) % every == 0

    def on_train_epoch_end(self) -> None:
        self.log("train/loss_epoch", self.train_loss.compute())
        self.log("train/acc", self.train_acc.compute(), prog_bar=True)
        self.train_loss.reset()
        self.train_acc.reset()

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict:
        out = self._shared_step(batch)
        self.val_loss(out["loss"])
        self.val_acc(out["preds"], batch[1])
        self.log(VAL_LOSS, self.val_loss, on_epoch=True, prog_bar=True)
        self.log(VAL_ACC, self.val_acc, on_epoch=True, prog_bar=True)
        return out

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        self.log(VAL_ACC_BEST, self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict:
        out = self._shared_step(batch)
        self.test_loss(out["loss"])
        self.test_acc(out["preds"], batch[1])
        self.log(TEST_LOSS, self.test_loss, on_epoch=True)
        self.log(TEST_ACC, self.test_acc, on_epoch=True)
        self.test_confusion.update(out["preds"], batch[1])
        return out

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def test_errors(self) -> dict[str, int]:
        """The last test's misreadings as ``{"true->predicted": count}``, most frequent first."""
        matrix = self.test_confusion.compute().cpu()
        matrix.fill_diagonal_(0)
        errors = [
            (f"{true}->{predicted}", int(matrix[true, predicted]))
            for true, predicted in matrix.nonzero().tolist()
        ]
        return dict(sorted(errors, key=lambda error: -error[1]))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the validation accuracy of the weights saved (export puts it in the ``.mar``)."""
        value = self.trainer.callback_metrics.get(VAL_ACC)
        checkpoint["val_acc"] = float(value) if value is not None else None

    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer is None:
            raise ValueError("DigitClassifier needs an optimizer to train (Hydra group `optimizer`)")
        optimizer = self.optimizer(params=self.parameters())
        if self.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler(optimizer=optimizer, **self._schedule_length())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _schedule_length(self) -> dict[str, int]:
        """Fill a scheduler's length argument with the run's number of optimiser steps."""
        target = getattr(self.scheduler, "func", self.scheduler)
        parameters = inspect.signature(target).parameters
        steps = int(self.trainer.estimated_stepping_batches)
        return {name: steps for name in ("total_steps", "T_max") if name in parameters}
