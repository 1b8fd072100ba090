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
from lightning import Callback, LightningModule, Trainer, seed_everything
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, open_dict
from torch.optim.swa_utils import AveragedModel

from digit_classifier.training.callbacks import EMA_DECAY, EMA_WARMUP, EpochSeed, WeightEMA, ema_update
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


def bare_loop(cfg: DictConfig, steps: int, profiler: torch.profiler.profile | None = None) -> float:
    """Images per second of a hand-written loop doing the same training work: the same tensors
    and augmentation, precision, loss, optimizer and weight average. ``profiler`` is stepped
    after every step."""
    torch.manual_seed(cfg.seed)
    datamodule, model = build_data_and_model(cfg)
    datamodule.setup("fit")
    optimizer = hydra.utils.instantiate(cfg.optimizer)(params=model.parameters())
    ema = _weight_average(cfg, model)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    smoothing = cfg.model.get("label_smoothing", 0.0)
    model.train()
    batches = _epochs(datamodule)
    for step in range(WARMUP + steps):
        if step == WARMUP:
            start = time.perf_counter()
        images, targets = datamodule.model_input(next(batches), augment=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(images), targets, label_smoothing=smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        if profiler is not None:
            profiler.step()
    return steps * cfg.data.batch_size / (time.perf_counter() - start)


def profile_bare_loop(cfg: DictConfig, steps: int, rows: int = 15) -> str:
    """``torch.profiler``'s table of the operators that take the bare loop's time, by input
    shape, over ``steps`` steps after the warm-up."""
    schedule = torch.profiler.schedule(wait=WARMUP - 1, warmup=1, active=steps, repeat=1)
    with torch.profiler.profile(schedule=schedule, record_shapes=True) as profiler:
        bare_loop(cfg, steps, profiler)
    averages = profiler.key_averages(group_by_input_shape=True)
    return averages.table(sort_by="self_cpu_time_total", row_limit=rows, max_shapes_column_width=60)


def _weight_average(cfg: DictConfig, model: torch.nn.Module) -> AveragedModel | None:
    """The bare loop's copy of ``train.py``'s weight EMA, when the config has one."""
    for entry in (cfg.get("callbacks") or {}).values():
        if entry and str(entry.get("_target_", "")).endswith(WeightEMA.__name__):
            update = ema_update(entry.get("decay", EMA_DECAY), entry.get("warmup", EMA_WARMUP))
            return AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    return None


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
    """After each epoch, test the model (its weight average when training keeps one, as
    that is what is served) and note the training time when ``target`` is first reached."""

    def __init__(self, datamodule: MNISTDataModule, target: float, ema: WeightEMA | None) -> None:
        self.datamodule, self.target, self.ema = datamodule, target, ema
        self.train_seconds, self.reached = 0.0, None
        self.history: list[tuple[int, float, float]] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_seconds += time.perf_counter() - self._start
        model = self.ema.averaged if self.ema is not None and self.ema.averaged is not None else pl_module
        accuracy = self._test_accuracy(model)
        self.history.append((trainer.current_epoch, round(self.train_seconds, 1), accuracy))
        if self.reached is None and accuracy >= self.target:
            self.reached = self.train_seconds
            trainer.should_stop = True

    def _test_accuracy(self, model: torch.nn.Module) -> float:
        self.datamodule.setup("test")
        correct, mode = 0, model.training
        model.eval()
        with torch.inference_mode():
            for batch in self.datamodule.test_dataloader():
                images, targets = self.datamodule.model_input(batch)
                correct += (model(images).argmax(1) == targets).sum().item()
        model.train(mode)
        return correct / len(self.datamodule.test_set)


def time_to_accuracy(cfg: DictConfig, target: float) -> dict:
    """Train as ``train.py`` does (same trainer settings, seeding, reseeding and weight
    average), without validation, checkpoints or logs, testing after each epoch."""
    seed_everything(cfg.seed, workers=True)
    datamodule, model = build_data_and_model(cfg)
    kept = [c for c in instantiate_list(cfg.callbacks) if isinstance(c, (EpochSeed, WeightEMA))]
    ema = next((c for c in kept if isinstance(c, WeightEMA)), None)
    clock = TestAccuracyClock(datamodule, target, ema)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=False,
        callbacks=[*kept, clock],
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
