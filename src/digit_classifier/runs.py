"""The run folder: what ``train.py`` writes, and what export and the sweep summary read.

    <run>/
      .hydra/config.yaml        the composed config
      .hydra/overrides.yaml     the command line's overrides
      metrics.json              RunMetrics, written when the run finishes
      checkpoints/best.ckpt     the lowest validation loss
      checkpoints/last.ckpt     the latest epoch, to resume from
      tensorboard/              the TensorBoard event files

The checkpoint names are set in ``configs/callbacks/default.yaml``; a test checks that
they agree with :data:`BEST_CHECKPOINT` and :data:`LAST_CHECKPOINT`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT = "best"
LAST_CHECKPOINT = "last"
HYDRA_DIR = ".hydra"

VAL_LOSS = "val/loss"
VAL_ACC = "val/acc"
VAL_ACC_BEST = "val/acc_best"
TEST_LOSS = "test/loss"
TEST_ACC = "test/acc"
"""The metric names training logs, which the configs' ``monitor`` and ``optimized_metric``,
``metrics.json`` and export read back (a test checks the configs)."""


@dataclass
class RunMetrics:
    """``metrics.json``: how a finished run scored and where its checkpoints are."""

    best_val_acc: float | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    best_ckpt_path: str | None = None
    last_ckpt_path: str | None = None
    epochs: int | None = None
    global_step: int | None = None
    fit_seconds: float | None = None
    wall_time_s: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    """Every value Lightning logged last (``trainer.callback_metrics``)."""

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / METRICS_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def read(cls, run_dir: str | Path) -> RunMetrics | None:
        """The run's metrics, or None when it has none (unfinished) or they cannot be read."""
        try:
            recorded = json.loads((Path(run_dir) / METRICS_FILE).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(recorded, dict):
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in recorded.items() if key in known})


@dataclass(frozen=True)
class RunFolder:
    """One training run's folder (a single run, or one trial of a sweep)."""

    path: Path

    @property
    def default_best_checkpoint(self) -> Path:
        return self.path / CHECKPOINT_DIR / f"{BEST_CHECKPOINT}.ckpt"

    def metrics(self) -> RunMetrics | None:
        return RunMetrics.read(self.path)

    def best_checkpoint(self) -> Path | None:
        """``best_ckpt_path`` from ``metrics.json`` where that file exists (it may have been
        written on another machine), else ``checkpoints/best.ckpt`` if it is there."""
        metrics = self.metrics()
        if metrics and metrics.best_ckpt_path:
            for candidate in (Path(metrics.best_ckpt_path), self.path / metrics.best_ckpt_path):
                if candidate.is_file():
                    return candidate
        return self.default_best_checkpoint if self.default_best_checkpoint.is_file() else None

    def config(self) -> dict[str, Any] | None:
        """The composed Hydra config as plain data (interpolations left as text)."""
        try:
            config = yaml.safe_load((self.path / HYDRA_DIR / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return None
        return config if isinstance(config, dict) else None

    def overrides(self) -> list[str]:
        try:
            overrides = yaml.safe_load((self.path / HYDRA_DIR / "overrides.yaml").read_text())
        except (OSError, yaml.YAMLError):
            return []
        return [str(override) for override in overrides or []]


def runs_below(root: Path) -> list[RunFolder]:
    """Every run folder under ``root`` (not ``root`` itself), in path order."""
    markers = [*root.rglob(METRICS_FILE), *root.rglob(f"{HYDRA_DIR}/config.yaml")]
    folders = {marker.parent for marker in markers if marker.name == METRICS_FILE}
    folders |= {marker.parent.parent for marker in markers if marker.name == "config.yaml"}
    folders.discard(root)
    return [RunFolder(path) for path in sorted(folders)]


def finite_float(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (or a one-element tensor), else None."""
    if hasattr(value, "numel") and value.numel() == 1:
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
