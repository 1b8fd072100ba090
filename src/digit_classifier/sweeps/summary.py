"""Summarise a sweep folder: ``summary.csv``, ``summary.md`` and ``best.json``.

Works for any multirun folder (grid or Optuna): each trial is a run folder
(:mod:`digit_classifier.runs`) whose ``metrics.json``, written by ``train.py`` when the
trial finished, is the source of truth. An Optuna sweep also leaves ``optuna_trials.json``,
which adds the trial state (pruned, failed, interrupted and retried), the study's value and
direction, and the last validation accuracy of trials that never wrote ``metrics.json``.

One trigger: the Hydra callback :class:`SweepSummary` (``configs/hydra/default.yaml``)
rewrites the summary after every trial and when the multirun ends, whatever the sweeper.
One rule for the best trial: :func:`best_trial`, which ``scripts/archive.py <sweep>`` uses too.

    python scripts/sweep_summary.py logs/optuna/digit_cnn_quick
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from digit_classifier.runs import METRICS_FILE, RunFolder, runs_below
from hydra_plugins.digit_optuna_sweeper import TRIAL_KEY, TRIALS_FILE

log = logging.getLogger(__name__)

INTERNAL_OVERRIDES = tuple(f"{plus}{TRIAL_KEY}." for plus in ("", "+", "++"))
STATE_ORDER = {"complete": 0, "pruned": 1, "running": 2}


@dataclass
class TrialRow:
    trial: str
    number: int | None
    state: str
    score: float | None = None
    best_val_acc: float | None = None
    test_acc: float | None = None
    epochs: int | None = None
    wall_time_s: float | None = None
    best_ckpt_path: str | None = None
    metrics_path: str | None = None
    overrides: list[str] = field(default_factory=list)
    note: str = ""


def _number(name: str) -> int | None:
    return int(name) if name.isdigit() else None


def _from_run(row: TrialRow, run: RunFolder) -> None:
    row.overrides = [o for o in run.overrides() if not o.startswith(INTERNAL_OVERRIDES)]
    metrics = run.metrics()
    checkpoint = run.best_checkpoint()
    row.best_ckpt_path = str(checkpoint.resolve()) if checkpoint else None
    if metrics is None:
        return
    row.state = "complete"
    row.metrics_path = str((run.path / METRICS_FILE).resolve())
    row.best_val_acc = metrics.best_val_acc
    row.test_acc = metrics.test_acc
    row.epochs = metrics.epochs
    row.wall_time_s = metrics.wall_time_s
    if metrics.best_ckpt_path and not checkpoint:
        row.best_ckpt_path = metrics.best_ckpt_path


def _from_optuna(row: TrialRow, record: dict[str, Any], retried_as: dict[int, int]) -> None:
    finished = row.metrics_path is not None and record["state"] == "running"
    row.state = "complete" if finished else record["state"]
    if record.get("replaced"):
        row.state = "interrupted"
        row.note = f"retried as #{retried_as.get(row.number, '?')}"
    elif "retry_of" in record.get("user_attrs", {}):
        row.note = f"retry of #{record['user_attrs']['retry_of']}"
    if record.get("value") is not None:
        row.score = record["value"]
    steps = record.get("intermediate_values") or {}
    if row.best_val_acc is None and steps:
        row.best_val_acc = max(steps.values())
    if row.epochs is None and steps:
        row.epochs = len(steps)
    if row.state == "pruned":
        row.note = f"pruned after {len(steps)} epoch(s)"
    if row.wall_time_s is None and record.get("duration_s") and row.state != "interrupted":
        row.wall_time_s = round(record["duration_s"], 2)


def collect(sweep_dir: Path) -> tuple[list[TrialRow], dict[str, Any]]:
    """All trials of the sweep, best first, and the Optuna study record (empty for grids)."""
    study: dict[str, Any] = {}
    if (sweep_dir / TRIALS_FILE).exists():
        study = json.loads((sweep_dir / TRIALS_FILE).read_text())
    records = {r["number"]: r for r in study.get("trials", [])}
    retried_as = {
        int(r["user_attrs"]["retry_of"]): r["number"]
        for r in records.values()
        if "retry_of" in r.get("user_attrs", {})
    }

    rows: list[TrialRow] = []
    for run in runs_below(sweep_dir):
        name = run.path.relative_to(sweep_dir).as_posix()
        row = TrialRow(trial=name, number=_number(name), state="incomplete")
        _from_run(row, run)
        if row.number in records:
            _from_optuna(row, records.pop(row.number), retried_as)
        if row.score is None and row.state == "complete":
            row.score = row.best_val_acc
        rows.append(row)
    for number, record in records.items():
        if record.get("user_attrs", {}).get("surplus") or record["state"] == "waiting":
            continue
        row = TrialRow(trial=str(number), number=number, state=record["state"])
        row.overrides = [f"{k}={v}" for k, v in record.get("params", {}).items()]
        _from_optuna(row, record, retried_as)
        row.note = (row.note + "; " if row.note else "") + "no folder here (another machine?)"
        rows.append(row)

    sign = 1.0 if study.get("direction", "maximize") == "minimize" else -1.0
    rows.sort(
        key=lambda r: (
            STATE_ORDER.get(r.state, 3),
            math.inf if r.score is None else sign * r.score,
            r.number if r.number is not None else math.inf,
            r.trial,
        )
    )
    return rows, study


def _varying(rows: list[TrialRow]) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides shared by every trial, and each trial's others."""
    if not rows:
        return [], {}
    common = [o for o in rows[0].overrides if all(o in r.overrides for r in rows)]
    return common, {r.trial: [o for o in r.overrides if o not in common] for r in rows}


def _short(override: str) -> str:
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    if value.lstrip("+-").isdigit():
        return override
    return f"{key}{sep}{number:.4g}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _markdown(sweep_dir: Path, rows: list[TrialRow], study: dict[str, Any]) -> str:
    common, varying = _varying(rows)
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    title = f"Optuna study `{study['study_name']}`" if study else "Sweep"
    lines = [
        f"# {title}: {sweep_dir}",
        "",
        f"{len(rows)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ".",
    ]
    if common:
        lines += ["", "Every trial: `" + " ".join(common) + "`"]
    lines += [
        "",
        "| rank | trial | state | best val acc | test acc | epochs | time (s) "
        "| overrides | best checkpoint | note |",
        "|---:|---:|---|---:|---:|---:|---:|---|---|---|",
    ]
    for rank, row in enumerate(rows, start=1):
        ckpt = row.best_ckpt_path or ""
        if ckpt and Path(ckpt).is_relative_to(sweep_dir.resolve()):
            ckpt = Path(ckpt).relative_to(sweep_dir.resolve()).as_posix()
        shown = " ".join(_short(o) for o in varying.get(row.trial, []))
        lines.append(
            f"| {rank} | {row.trial} | {row.state} | {_fmt(row.best_val_acc)} "
            f"| {_fmt(row.test_acc)} | {'' if row.epochs is None else row.epochs} "
            f"| {_fmt(row.wall_time_s, 1)} | `{shown}` | {ckpt} | {row.note} |"
        )
    best = _best(rows)
    lines += ["", f"Best: trial {best.trial}, {best.best_ckpt_path}" if best else "No best yet."]
    return "\n".join(lines) + "\n"


def _best(rows: list[TrialRow]) -> TrialRow | None:
    """``rows`` come sorted by :func:`collect`, so the best is the first finished one with a checkpoint."""
    return next((r for r in rows if r.state == "complete" and r.best_ckpt_path), None)


def best_trial(sweep_dir: str | Path) -> TrialRow | None:
    """The sweep's best finished trial that has a checkpoint, or None.

    The rule: the highest score (the study's value and direction for an Optuna search,
    ``best_val_acc`` for any other sweep), ties to the earlier trial.
    """
    rows, _ = collect(Path(sweep_dir))
    return _best(rows)


def _csv(rows: list[TrialRow]) -> str:
    buffer = io.StringIO()
    names = ["rank", *(f for f in TrialRow.__dataclass_fields__ if f != "overrides")]
    writer = csv.DictWriter(buffer, fieldnames=[*names, "overrides"])
    writer.writeheader()
    for rank, row in enumerate(rows, start=1):
        writer.writerow(asdict(row) | {"rank": rank, "overrides": " ".join(row.overrides)})
    return buffer.getvalue()


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically: workers of a shared study summarise the same folder."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)


def write_summary(sweep_dir: str | Path, *, plots: bool = False) -> Path:
    """Write ``summary.csv``, ``summary.md`` and (once a trial completed) ``best.json``.

    With ``plots``, an Optuna sweep's plots are drawn first (:mod:`.plots`), so that
    ``summary.md`` links them; that takes a second or two, so it is done once per search.
    """
    sweep_dir = Path(sweep_dir)
    rows, study = collect(sweep_dir)
    text = _markdown(sweep_dir, rows, study)
    if study:
        # Only Optuna sweeps load the plots' module, and with it pyplot.
        from digit_classifier.sweeps import plots as optuna_plots

        if plots:
            optuna_plots.draw_plots(sweep_dir, study)
        text += "\n" + "\n".join(optuna_plots.markdown(sweep_dir, study))
    _write(sweep_dir / "summary.csv", _csv(rows))
    markdown = sweep_dir / "summary.md"
    _write(markdown, text)
    best = _best(rows)
    if best is not None:
        _write(sweep_dir / "best.json", json.dumps(asdict(best), indent=2) + "\n")
        log.info("Sweep summary: %s; best trial %s: %s", markdown, best.trial, best.best_ckpt_path)
    return markdown


class SweepSummary(Callback):
    """Hydra callback, the summary's one trigger: after every job of a multirun and at its end.

    It works with any sweeper (Hydra's grid, ours for Optuna) and any launcher.
    """

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._summarise(config, plots=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._summarise(config, plots=True)

    @staticmethod
    def _summarise(config: DictConfig, plots: bool) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        try:
            write_summary(sweep_dir, plots=plots)
        except Exception:
            log.exception("Sweep summary of %s failed", sweep_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. logs/optuna/<study>")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    print(write_summary(args.sweep_dir, plots=True).read_text(), end="")
