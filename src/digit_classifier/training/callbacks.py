"""Callbacks: per-epoch reseeding for exact resumes, a weight EMA, and TensorBoard pictures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.utilities.seed import seed_everything
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image, ImageDraw
from torch.utils.tensorboard import SummaryWriter
from torchmetrics.classification import MulticlassConfusionMatrix
from torchvision.utils import make_grid

from digit_classifier.runtime.networks import NUM_CLASSES
from digit_classifier.runtime.preprocessing import IMAGE_SIZE, denormalize


def _tensorboard(trainer: Trainer) -> SummaryWriter | None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


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


EMA_DECAY = 0.999
EMA_WARMUP = 10.0


def ema_update(
    decay: float = EMA_DECAY, warmup: float = EMA_WARMUP
) -> Callable[[list[torch.Tensor], list[torch.Tensor], torch.Tensor], None]:
    """An ``AveragedModel`` update whose decay after ``n`` updates is
    ``min(decay, (1 + n) / (warmup + n))``.

    With a fixed 0.999 the average would still be a quarter made of the initial weights
    after three epochs of a short run; warming up, it follows the weights early and
    smooths them late. A smaller ``warmup`` lengthens the average sooner; at 1 or below
    there is no warm-up, the decay is ``decay`` from the first update. With the default
    10, the warm-up reaches 0.999 only after about 9,000 updates: in shorter runs it sets
    the decay alone and ``decay`` never binds (docs/training.md).
    """
    if warmup <= 0:
        raise ValueError(f"warmup must be positive, got {warmup}")

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], count: torch.Tensor) -> None:
        weight = 1 - min(decay, (1 + float(count)) / (warmup + float(count)))
        for average, value in zip(averaged, current, strict=True):
            if average.is_floating_point():
                average.lerp_(value, weight)
            else:
                average.copy_(value)

    return update


class WeightEMA(WeightAveraging):
    """An exponential moving average of the weights (and batch-norm statistics), updated after
    every optimiser step from ``start_step`` on (:func:`ema_update`): what validation sees,
    what the checkpoints' ``state_dict`` holds, and so what is tested and served. The live
    weights travel in the checkpoint too (``current_model_state``), so a resumed run
    continues exactly.

    Lightning 2.6's ``WeightAveraging`` reloads the live weights whenever a checkpoint is
    loaded after ``fit`` has set it up, which would make ``trainer.test(ckpt_path=best)`` test
    the live weights; outside fitting the averaged ``state_dict`` is kept as loaded.
    """

    def __init__(self, decay: float = EMA_DECAY, warmup: float = EMA_WARMUP, start_step: int = 0) -> None:
        super().__init__(multi_avg_fn=ema_update(decay, warmup))
        self.start_step = start_step

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and step_idx >= self.start_step

    @property
    def averaged(self) -> torch.nn.Module | None:
        """The averaged copy of the LightningModule, once ``fit`` has set it up."""
        return self._average_model.module if self._average_model is not None else None

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


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
        images = denormalize(batch[0][: self.count].detach().cpu())
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
        writer.add_image("val/confusion_matrix", confusion_image(matrix.cpu()), step, dataformats="HWC")
        if self.wrong:
            writer.add_image("val/misclassified", misclassified_grid(self.wrong), step, dataformats="HWC")


def confusion_image(matrix: torch.Tensor, cell: int = 30) -> np.ndarray:
    """The confusion matrix as an RGB image: rows true, columns predicted, each count on a
    cell shaded by its share of the row (drawn with Pillow, like :func:`misclassified_grid`)."""
    classes = matrix.shape[0]
    share = (matrix.float() / matrix.sum(dim=1, keepdim=True).clamp(min=1)).numpy()
    canvas = Image.new("RGB", ((classes + 1) * cell, (classes + 1) * cell), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), "t\\p", fill=(120, 120, 120))
    for index in range(classes):
        draw.text((cell * (index + 1) + cell // 3, cell // 3), str(index), fill=(0, 0, 0))
        draw.text((cell // 3, cell * (index + 1) + cell // 3), str(index), fill=(0, 0, 0))
    for true, predicted in np.ndindex(classes, classes):
        shade = int(255 * (1 - share[true, predicted]))
        box = (cell * (predicted + 1), cell * (true + 1), cell * (predicted + 2) - 1, cell * (true + 2) - 1)
        draw.rectangle(box, fill=(shade, shade, 255) if true == predicted else (255, shade, shade))
        ink = (255, 255, 255) if shade < 128 else (0, 0, 0)
        draw.text((box[0] + 3, box[1] + cell // 3), str(int(matrix[true, predicted])), fill=ink)
    return np.asarray(canvas)


def misclassified_grid(
    wrong: list[tuple[torch.Tensor, int, int]], columns: int = 8, zoom: int = 2
) -> np.ndarray:
    """The wrong digits, enlarged, each over its ``predicted (true)`` caption, as one RGB image.

    Drawn with Pillow: a grid of 32 matplotlib subplots took over a second each epoch.
    """
    side = IMAGE_SIZE * zoom
    cell_width, cell_height = side + 6, side + 16
    rows = (len(wrong) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * cell_width, rows * cell_height), (48, 48, 48))
    draw = ImageDraw.Draw(canvas)
    for number, (image, pred, target) in enumerate(wrong):
        x, y = (number % columns) * cell_width + 3, (number // columns) * cell_height + 2
        pixels = (denormalize(image)[0].numpy() * 255).astype(np.uint8)
        canvas.paste(Image.fromarray(pixels).resize((side, side), Image.Resampling.NEAREST), (x, y))
        draw.text((x, y + side + 1), f"{pred} (true {target})", fill=(255, 110, 110))
    return np.asarray(canvas)
