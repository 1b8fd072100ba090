"""Fault injection for tests, loaded by Hydra from the tests folder."""

from __future__ import annotations

import os
import signal

from lightning import Callback, LightningModule, Trainer


class KillAt(Callback):
    """SIGKILL the training process at a given epoch and batch: a crash with no clean-up.

    ``fit`` picks which fit of the process dies: a multirun's trials are fits, one after
    another, in one process, each with a fresh instance of this callback. ``signal`` names
    another signal to send, such as ``SIGSTOP`` to freeze the process for a test to act on.
    """

    fits_started = 0

    def __init__(self, epoch: int, batch: int, fit: int = 0, signal: str = "SIGKILL") -> None:
        self.epoch = epoch
        self.batch = batch
        self.fit = fit
        self.signal = signal

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.this_fit = KillAt.fits_started
        KillAt.fits_started += 1

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, batch_idx: int
    ) -> None:
        if (self.this_fit, trainer.current_epoch, batch_idx) == (self.fit, self.epoch, self.batch):
            os.kill(os.getpid(), signal.Signals[self.signal])
