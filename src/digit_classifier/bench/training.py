"""Training throughput of ``train.py``'s Lightning step against a bare PyTorch loop, and
time to a test accuracy. ``scripts/bench_train.py`` is the command line; its docstring says
how the figures are measured.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator

import hydra
import torch
import torch.nn.functional as F
from lightning import Callback, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, open_dict

from digit_classifier.training.callbacks import EpochSeed
from digit_classifier.training.configs import compose_config
from digit_classifier.training.data import MNISTDataModule
from digit_classifier.training.train import build_data_and_model, instantiate_list

WARMUP = 20
MODELS = {"seed_cnn": ["experiment=seed_baseline"], "digit_cnn": []}


def bench_config(overrides: list[str]) -> DictConfig:
    """``train.py``'s config for ``overrides``, writing its logs to a temporary folder."""
    cfg = compose_config(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="bench-train-")
    return cfg


def bare_loop(cfg: DictConfig, steps: int) -> float:
    """Images per second of a hand-written loop over the same tensors and transforms."""
    torch.manual_seed(cfg.seed)
    datamodule, model = build_data_and_model(cfg)
    datamodule.setup("fit")
    optimizer = hydra.utils.instantiate(cfg.optimizer)(params=model.parameters())
    model.train()
    batches = _epochs(datamodule)
    for step in range(WARMUP + steps):
        if step == WARMUP:
            start = time.perf_counter()
        images, targets = datamodule.model_input(next(batches), augment=True)
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def _epochs(datamodule: MNISTDataModule) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches, epoch after epoch, as ``max_steps`` runs Lightning through them."""
    while True:
        yield from datamodule.train_dataloader()


class StepTimer(Callback):
    """Times training batches end to end after a warm-up: the interval between the ends of
    consecutive batches covers fetching, augmenting and the step, like the bare loop."""

    def __init__(self) -> None:
        self.elapsed, self.images, self._last = 0.0, 0, None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None and trainer.global_step > WARMUP:
            self.elapsed += now - self._last
            self.images += batch[0].shape[0]
        self._last = now


def lightning_loop(cfg: DictConfig, steps: int) -> float:
    datamodule, model = build_data_and_model(cfg)
    timer = StepTimer()
    callbacks = [
        callback for callback in instantiate_list(cfg.callbacks) if not isinstance(callback, ModelCheckpoint)
    ]
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        max_steps=WARMUP + steps,
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=hydra.utils.instantiate(cfg.logger.tensorboard),
        callbacks=[*callbacks, timer],
    )
    trainer.fit(model, datamodule=datamodule)
    return timer.images / timer.elapsed


class TestAccuracyClock(Callback):
    """After each epoch, test the model and note the training time when ``target`` is first reached."""

    def __init__(self, datamodule: MNISTDataModule, target: float) -> None:
        self.datamodule, self.target = datamodule, target
        self.train_seconds, self.reached = 0.0, None
        self.history: list[tuple[int, float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.train_seconds += time.perf_counter() - self._start
        self.datamodule.setup("test")
        correct = 0
        pl_module.eval()
        with torch.inference_mode():
            for batch in self.datamodule.test_dataloader():
                images, targets = self.datamodule.model_input(batch)
                correct += (pl_module(images).argmax(1) == targets).sum().item()
        pl_module.train()
        accuracy = correct / len(self.datamodule.test_set)
        self.history.append((trainer.current_epoch, round(self.train_seconds, 1), accuracy))
        if self.reached is None and accuracy >= self.target:
            self.reached = self.train_seconds
            trainer.should_stop = True


def time_to_accuracy(cfg: DictConfig, target: float) -> dict:
    """Train as ``train.py`` does (same seeding, per-epoch reseeding), testing after each epoch."""
    seed_everything(cfg.seed, workers=True)
    datamodule, model = build_data_and_model(cfg)
    clock = TestAccuracyClock(datamodule, target)
    reseeding = [callback for callback in instantiate_list(cfg.callbacks) if isinstance(callback, EpochSeed)]
    trainer = Trainer(
        max_epochs=cfg.trainer.max_epochs,
        accelerator="cpu",
        deterministic=True,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_checkpointing=False,
        logger=False,
        callbacks=[*reseeding, clock],
    )
    trainer.fit(model, datamodule=datamodule)
    return {"target": target, "seconds": clock.reached, "epochs": clock.history}


def compare(cfg: DictConfig, steps: int, rounds: int) -> dict:
    """Bare and Lightning images per second, measured back to back ``rounds`` times.

    The headline figures are each path's fastest run: interference from the rest of the
    machine only ever slows a run down, so the fastest is the least disturbed (``timeit``'s
    reasoning). The median of the rounds' own ratios is reported beside it.
    """
    pairs = [(bare_loop(cfg, steps), lightning_loop(cfg, steps)) for _ in range(rounds)]
    bare = max(bare for bare, _ in pairs)
    lightning = max(lightning for _, lightning in pairs)
    return {
        "batch_size": cfg.data.batch_size,
        "bare_images_per_s": round(bare),
        "lightning_images_per_s": round(lightning),
        "lightning_over_bare": round(lightning / bare, 3),
        "median_round_ratio": round(statistics.median(lightning / bare for bare, lightning in pairs), 3),
        "rounds": [[round(bare), round(lightning), round(lightning / bare, 3)] for bare, lightning in pairs],
    }
