"""Fault injection for tests, loaded by Hydra from the tests folder."""

from __future__ import annotations

import os
import signal

from lightning import Callback, LightningModule, Trainer


class KillAt(Callback):
    """SIGKILL the training process at a given epoch and batch: a crash with no clean-up."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
