"""Training entry point: ``python train.py`` with Hydra overrides.

``main`` returns the metric named by ``optimized_metric`` so that Hydra sweepers
(``-m hparams_search=...``) can optimise it.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from lightning import Callback, LightningDataModule, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from digit_classifier.checkout import CONFIGS
from digit_classifier.runs import TEST_ACC, TEST_LOSS, VAL_ACC_BEST, RunMetrics, finite_float

log = logging.getLogger(__name__)

FINAL_METRICS = ("best_val_acc", "test_acc", "test_loss")
"""The ``metrics.json`` figures that TensorBoard's HParams tab shows beside the knobs (``final/...``)."""


def instantiate_list(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group such as ``callbacks``."""
    if not group:
        return []
    return [hydra.utils.instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def build_data_and_model(cfg: DictConfig) -> tuple[LightningDataModule, LightningModule]:
    """Instantiate the data module and the model from a composed config."""
    datamodule = hydra.utils.instantiate(cfg.data)
    scheduler = cfg.get("scheduler") or None  # scheduler=none is an empty config
    model = hydra.utils.instantiate(cfg.model, optimizer=cfg.optimizer, scheduler=scheduler)
    return datamodule, model


def build(cfg: DictConfig) -> tuple[LightningDataModule, LightningModule, Trainer]:
    """Instantiate the data module, the model and the trainer from a composed config.

    Without a logger (``logger=none``) the learning-rate monitor is left out: it has nowhere
    to write, and Lightning refuses to start a fit with it.
    """
    datamodule, model = build_data_and_model(cfg)
    callbacks: list[Callback] = instantiate_list(cfg.get("callbacks"))
    loggers: list[Logger] = instantiate_list(cfg.get("logger"))
    if not loggers:
        callbacks = [callback for callback in callbacks if not isinstance(callback, LearningRateMonitor)]
    trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    return datamodule, model, trainer


def _flatten(path: str, value: Any) -> dict[str, Any]:
    """``optimizer`` -> ``{"optimizer": "AdamW", "optimizer.lr": 0.005, ...}``.

    A node's ``_target_`` names it; Hydra's other keys (``_partial_``) are left out, and an
    empty node (``scheduler=none``) is ``"none"``.
    """
    if not isinstance(value, dict):
        return {path: value}
    flat: dict[str, Any] = {path: value["_target_"].rpartition(".")[2]} if "_target_" in value else {}
    for key, child in value.items():
        if not key.startswith("_"):
            flat.update(_flatten(f"{path}.{key}", child))
    return flat or {path: "none"}


def tuned_hyperparameters(cfg: DictConfig) -> dict[str, Any]:
    """The knobs ``cfg.hparams`` lists, one entry per setting; paths this config lacks are left out."""
    knobs: dict[str, Any] = {}
    for path in cfg.get("hparams") or []:
        node = OmegaConf.select(cfg, path)
        if OmegaConf.is_config(node):
            node = OmegaConf.to_container(node, resolve=True)
        if node is not None:
            knobs.update(_flatten(path, node))
    return knobs


def log_hyperparameters(cfg: DictConfig, trainer: Trainer) -> None:
    """Give the loggers the tuned knobs and the names of the final metrics to compare runs by.

    The metrics are NaN until :func:`log_final_metrics` reports them, so that a run that
    stopped early (pruned, killed) shows no figures rather than zeros.
    """
    metrics = {f"final/{name}": math.nan for name in FINAL_METRICS}
    for logger in trainer.loggers:
        logger.log_hyperparams(tuned_hyperparameters(cfg), metrics=metrics)


def log_final_metrics(trainer: Trainer, summary: RunMetrics) -> None:
    """Report the run's final metrics; fit and test have closed the loggers, so close them again."""
    values = {f"final/{name}": getattr(summary, name) for name in FINAL_METRICS}
    for logger in trainer.loggers:
        logger.log_metrics({k: v for k, v in values.items() if v is not None}, step=trainer.global_step)
        logger.finalize("success")


def train(cfg: DictConfig) -> dict[str, float | None]:
    """Fit, optionally test with the best checkpoint, and write ``metrics.json``."""
    if cfg.get("seed") is not None:
        seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    started = time.perf_counter()
    datamodule, model, trainer = build(cfg)
    log_hyperparameters(cfg, trainer)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - started
    metrics = {name: finite_float(value) for name, value in trainer.callback_metrics.items()}

    checkpoint = trainer.checkpoint_callback
    best_path = getattr(checkpoint, "best_model_path", "") or None
    last_path = _latest_checkpoint(trainer)
    if cfg.get("test"):
        trainer.test(model, datamodule=datamodule, ckpt_path=best_path or None, weights_only=True)
        metrics.update({name: finite_float(v) for name, v in trainer.callback_metrics.items()})

    summary = RunMetrics(
        best_val_acc=metrics.get(VAL_ACC_BEST),
        test_acc=metrics.get(TEST_ACC),
        test_loss=metrics.get(TEST_LOSS),
        best_ckpt_path=_resolved(best_path),
        last_ckpt_path=_resolved(last_path),
        epochs=trainer.current_epoch,
        global_step=trainer.global_step,
        fit_seconds=round(fit_seconds, 2),
        wall_time_s=round(time.perf_counter() - started, 2),
        metrics=metrics,
    )
    log_final_metrics(trainer, summary)
    if trainer.is_global_zero:
        output = summary.write(cfg.paths.output_dir)
        log.info("Wrote %s: val acc %s, test acc %s", output, summary.best_val_acc, summary.test_acc)
    return metrics | {"best_val_acc": summary.best_val_acc}


def _latest_checkpoint(trainer: Trainer) -> str | None:
    """The path kept by the checkpoint callback that saves every epoch (``monitor: null``)."""
    for callback in trainer.checkpoint_callbacks:
        if callback.monitor is None and callback.best_model_path:
            return callback.best_model_path
    return None


def _resolved(path: str | None) -> str | None:
    return str(Path(path).resolve()) if path else None


@hydra.main(version_base="1.3", config_path=str(CONFIGS), config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    name = cfg.get("optimized_metric")
    if not name:
        return None
    if metrics.get(name) is None:
        raise KeyError(f"optimized_metric {name!r} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


if __name__ == "__main__":
    main()
