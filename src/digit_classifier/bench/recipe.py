"""The training recipe against the seed app's, in one run: time, accuracy, and what users get.

``scripts/bench_recipe.py`` is the command line. Each round trains the seed baseline
(``experiment=seed_baseline``), then the default (``python train.py``), then any named
experiment asked for (``experiment=accurate``), as a user runs them, timing each whole
command; then it measures the default configuration's time to a test accuracy
(:func:`digit_classifier.bench.training.time_to_accuracy`), and serves every trained model
from a private TorchServe to send every MNIST test image, every drawn digit
and every handwriting variant through the endpoint as PNG uploads.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from digit_classifier.bench.endpoint import evaluate
from digit_classifier.bench.samples import Sample
from digit_classifier.bench.training import bench_config, time_to_accuracy
from digit_classifier.runs import RunFolder
from digit_classifier.serving.archive import build_archive
from digit_classifier.serving.torchserve import private_torchserve

RECIPES = {"seed_baseline": ["experiment=seed_baseline"], "default": []}
"""The recipes every run compares, each as its ``train.py`` overrides."""


def recipes(experiments: Sequence[str] = ()) -> dict[str, list[str]]:
    """The seed baseline, the default, then each ``configs/experiment/<name>.yaml`` asked for."""
    return RECIPES | {name: [f"experiment={name}"] for name in experiments}


def train_timed(name: str, recipe: list[str], overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Run ``python train.py`` as a user would; the wall time of the whole command and its metrics."""
    command = [sys.executable, "train.py", *recipe, *overrides]
    command += ["trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}"]
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    wall_s = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
    metrics = RunFolder(run_dir).metrics()
    assert metrics is not None, f"{run_dir} has no metrics.json"
    print(f"{name}: {wall_s:.1f} s, test accuracy {metrics.test_acc:.4f} ({run_dir})", flush=True)
    return {
        "run_dir": str(run_dir),
        "wall_s": round(wall_s, 1),
        "fit_s": metrics.fit_seconds,
        "test_acc": metrics.test_acc,
        "best_val_acc": metrics.best_val_acc,
        "epochs": metrics.epochs,
    }


def train_rounds(
    rounds: int, overrides: list[str], out_dir: Path, experiments: Sequence[str] = ()
) -> dict[str, list[dict[str, Any]]]:
    """Each recipe ``rounds`` times, alternating, so that all see the same machine."""
    chosen = recipes(experiments)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    for number in range(rounds):
        for name, recipe in chosen.items():
            runs[name].append(train_timed(name, recipe, overrides, out_dir / f"{name}-{number}"))
    return runs


def through_endpoint(run_dir: Path, sets: dict[str, list[Sample]], concurrency: int = 8) -> dict[str, Any]:
    """Archive a run's best checkpoint, serve it privately, send every set through it."""
    with tempfile.TemporaryDirectory(prefix="digit-recipe-") as tmp:
        home = Path(tmp)
        checkpoint = RunFolder(run_dir).best_checkpoint()
        assert checkpoint is not None, f"{run_dir} has no best checkpoint"
        build_archive(checkpoint, home / "store")
        with private_torchserve(home, home / "store") as server:
            report = evaluate(server.predict_url(), sets, concurrency, None, max_listed=50)
    return {
        name: {key: data[key] for key in ("n", "accuracy", "errors", "accuracy_by", "confusions")}
        for name, data in report["datasets"].items()
    }


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Median wall time per recipe and the default's ratio to the seed baseline, per round too."""
    median = {name: statistics.median(run["wall_s"] for run in rounds) for name, rounds in runs.items()}
    ratios = [d["wall_s"] / s["wall_s"] for s, d in zip(runs["seed_baseline"], runs["default"], strict=True)]
    return {
        "median_wall_s": median,
        "wall_ratio": round(median["default"] / median["seed_baseline"], 2),
        "round_ratios": [round(ratio, 2) for ratio in ratios],
    }


def time_to_target(overrides: list[str], target: float) -> dict[str, Any]:
    cfg = bench_config(overrides)
    result = time_to_accuracy(cfg, target)
    reached = "not reached" if result["seconds"] is None else f"{result['seconds']:.0f} s"
    print(f"time to {target:.1%} test accuracy: {reached}; per epoch {result['epochs']}", flush=True)
    return result


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


def recipe_markdown(report: dict[str, Any]) -> str:
    """The README's training table from a report: one row per recipe, then time to accuracy."""
    total = report["summary"]["median_wall_s"]
    rounds = len(report["runs"]["default"])
    lines = [
        f"| recipe | test accuracy | wall time (median of {rounds}) | x seed | endpoint: MNIST test "
        "| endpoint: drawn-digits-dev | endpoint: variants |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in report["runs"].items():
        served = report.get("endpoint", {}).get(name, {})
        cells = [
            _percent(served.get(key, {}).get("accuracy"))
            for key in ("mnist_test", "drawn_digits_dev", "variants")
        ]
        lines.append(
            f"| `{name}` | {_percent(runs[-1]['test_acc'])} | {total[name]:.0f} s "
            f"| {total[name] / total['seed_baseline']:.2f} | {' | '.join(cells)} |"
        )
    reach = report["time_to_accuracy"]
    seconds = reach["seconds"]
    ratio = (
        "" if seconds is None else f" ({seconds / total['seed_baseline']:.2f}x the seed baseline's whole run)"
    )
    reached = "not reached" if seconds is None else f"{seconds:.0f} s"
    lines += ["", f"Time to {reach['target']:.0%} test accuracy: {reached}{ratio}."]
    variants = report.get("endpoint", {}).get("default", {}).get("variants")
    if variants:
        by_kind = ", ".join(
            f"{kind} {acc:.1%}" for kind, acc in variants["accuracy_by"].get("variant", {}).items()
        )
        lines.append(f"Variants through the endpoint, by kind (default recipe): {by_kind}.")
    return "\n".join(lines) + "\n"
