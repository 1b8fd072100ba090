"""Summarise a sweep folder: ``summary.csv``, ``summary.md`` and ``best.json``.

Works for any multirun folder (grid or Optuna): each trial is a subfolder with
``.hydra/overrides.yaml`` and, when training finished, ``metrics.json`` (the source of
truth, written by ``train.py``). An Optuna sweep also leaves ``optuna_trials.json``, which
adds the trial state (pruned, failed, interrupted and retried) and the last validation
accuracy of trials that never wrote ``metrics.json``.

    python scripts/sweep_summary.py logs/optuna/digit_cnn_quick
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

OPTUNA_TRIALS = "optuna_trials.json"
INTERNAL_OVERRIDES = ("optuna_trial.", "+optuna_trial.", "++optuna_trial.")
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


def _read_overrides(trial_dir: Path) -> list[str]:
    path = trial_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return []
    overrides = yaml.safe_load(path.read_text()) or []
    return [str(o) for o in overrides if not str(o).startswith(INTERNAL_OVERRIDES)]


def _trial_dirs(sweep_dir: Path) -> dict[str, Path]:
    found = {}
    for overrides in sorted(sweep_dir.rglob(".hydra/overrides.yaml")):
        trial_dir = overrides.parent.parent
        if trial_dir != sweep_dir:
            found[trial_dir.relative_to(sweep_dir).as_posix()] = trial_dir
    return found


def _number(name: str) -> int | None:
    return int(name) if name.isdigit() else None


def _from_metrics(row: TrialRow, trial_dir: Path) -> None:
    path = trial_dir / "metrics.json"
    if not path.exists():
        ckpt = trial_dir / "checkpoints" / "best.ckpt"
        row.best_ckpt_path = str(ckpt.resolve()) if ckpt.exists() else None
        return
    metrics = json.loads(path.read_text())
    row.metrics_path = str(path.resolve())
    row.best_val_acc = metrics.get("best_val_acc")
    row.test_acc = metrics.get("test_acc")
    row.epochs = metrics.get("epochs")
    row.wall_time_s = metrics.get("wall_time_s")
    row.best_ckpt_path = metrics.get("best_ckpt_path")


def _from_optuna(row: TrialRow, record: dict[str, Any], retried_as: dict[int, int]) -> None:
    row.state = record["state"]
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
    if (sweep_dir / OPTUNA_TRIALS).exists():
        study = json.loads((sweep_dir / OPTUNA_TRIALS).read_text())
    records = {r["number"]: r for r in study.get("trials", [])}
    retried_as = {
        int(r["user_attrs"]["retry_of"]): r["number"]
        for r in records.values()
        if "retry_of" in r.get("user_attrs", {})
    }

    rows: list[TrialRow] = []
    for name, trial_dir in _trial_dirs(sweep_dir).items():
        row = TrialRow(trial=name, number=_number(name), state="incomplete")
        row.overrides = _read_overrides(trial_dir)
        _from_metrics(row, trial_dir)
        if row.metrics_path:
            row.state = "complete"
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
    return next((r for r in rows if r.state == "complete" and r.best_ckpt_path), None)


def write_summary(sweep_dir: str | Path) -> Path:
    """Write ``summary.csv``, ``summary.md`` and (once a trial completed) ``best.json``."""
    sweep_dir = Path(sweep_dir)
    rows, study = collect(sweep_dir)
    with (sweep_dir / "summary.csv").open("w", newline="") as handle:
        names = ["rank", *(f for f in TrialRow.__dataclass_fields__ if f != "overrides")]
        writer = csv.DictWriter(handle, fieldnames=[*names, "overrides"])
        writer.writeheader()
        for rank, row in enumerate(rows, start=1):
            record = asdict(row) | {"rank": rank, "overrides": " ".join(row.overrides)}
            writer.writerow(record)
    markdown = sweep_dir / "summary.md"
    markdown.write_text(_markdown(sweep_dir, rows, study))
    best = _best(rows)
    if best is not None:
        (sweep_dir / "best.json").write_text(json.dumps(asdict(best), indent=2) + "\n")
        log.info("Sweep summary: %s; best trial %s: %s", markdown, best.trial, best.best_ckpt_path)
    return markdown


class SweepSummary(Callback):
    """Hydra callback: summarise every multirun when it ends.

    Skipped when the sweeper already writes the summary itself (``hydra.sweeper.summary_fn``).
    """

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if config.hydra.sweeper.get("summary_fn"):
            return
        write_summary(config.hydra.sweep.dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder, e.g. logs/optuna/<study>")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        parser.error(f"{args.sweep_dir} is not a folder")
    print(write_summary(args.sweep_dir).read_text(), end="")
