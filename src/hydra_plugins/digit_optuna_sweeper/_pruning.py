"""Optuna pruning for trials launched by this sweeper: a Lightning callback.

The sweeper adds ``optuna_trial.{study,number}`` to each trial's config; the
``hparams_search`` presets add a ``callbacks.optuna_pruning`` entry (the package's
:func:`~hydra_plugins.digit_optuna_sweeper.optuna_pruning`, which imports this module), so
``train.py`` needs no change: outside a search the entry is a no-op callback. It lives in
the plugin, beside the trials it reports to, so that the training package knows nothing of
Optuna; the leading underscore keeps Hydra's plugin scan from importing Lightning and
Optuna at every start.
"""

from __future__ import annotations

from lightning import LightningModule, Trainer
from optuna_integration import PyTorchLightningPruningCallback


class TrialPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning callback, except that the last epoch is reported, never pruned.

    Pruning after the last epoch saves no training and would throw away a finished run
    (its test and ``metrics.json``), so the trial completes instead and the sampler
    learns from its value.
    """

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        last_epoch = 0 < (trainer.max_epochs or 0) <= trainer.current_epoch + 1
        if last_epoch and not trainer.sanity_checking and not self.is_ddp_backend:
            score = trainer.callback_metrics.get(self.monitor)
            if score is not None:
                self._trial.report(float(score), step=trainer.current_epoch)
            return
        super().on_validation_end(trainer, pl_module)
