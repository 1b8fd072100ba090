"""Optuna's own plots of a search, as PNGs in its sweep folder, linked from ``summary.md``.

The study is rebuilt from the folder's ``optuna_trials.json`` (the sweeper's snapshot), not
read from its storage: the plots then show the trials the summary lists, under the same
numbers, and ``scripts/sweep_summary.py`` redraws them from a copied folder without a
database connection or its password. Drawing never raises: a plot that cannot be drawn is
logged and left out.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import optuna
from optuna import Study
from optuna.distributions import json_to_distribution
from optuna.exceptions import ExperimentalWarning
from optuna.storages import InMemoryStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from optuna.visualization import matplotlib as visualization

log = logging.getLogger(__name__)


class Plot(NamedTuple):
    name: str
    """The PNG's stem and the plot's function, ``optuna.visualization.matplotlib.plot_<name>``."""
    title: str
    min_complete: int
    """Completed trials the plot needs to say anything."""


PLOTS = (
    Plot("optimization_history", "Optimisation history", 1),
    Plot("param_importances", "Parameter importances", 2),
    Plot("parallel_coordinate", "Parallel coordinates", 1),
    Plot("slice", "Slice plot", 1),
)

MIN_WIDTH_IN = 10.0
"""Optuna's default 6.4 inches crowds the axis labels of a five-parameter search."""


def _frozen(record: dict[str, Any]) -> FrozenTrial:
    state = TrialState[record["state"].upper()]
    return optuna.trial.create_trial(
        state=state,
        value=record["value"] if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        params=record["params"],
        distributions={k: json_to_distribution(v) for k, v in record["distributions"].items()},
        user_attrs=record.get("user_attrs", {}),
        intermediate_values={int(k): v for k, v in (record.get("intermediate_values") or {}).items()},
    )


def study_from_snapshot(snapshot: dict[str, Any]) -> Study:
    """An in-memory study holding the snapshot's trials, each under its own number.

    Trials that no longer count (interrupted and retried, or surplus) are failed ones, which
    the plots leave out; keeping them keeps the numbers those of the summary.
    """
    storage = InMemoryStorage()
    direction = StudyDirection[snapshot["direction"].upper()]
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    try:
        storage.create_new_study([direction], snapshot["study_name"])
    finally:
        optuna.logging.set_verbosity(verbosity)
    study = optuna.load_study(study_name=snapshot["study_name"], storage=storage)
    study.add_trials(_frozen(record) for record in sorted(snapshot["trials"], key=lambda r: r["number"]))
    return study


def _save(figure: Any, path: Path) -> None:
    """Write ``path`` atomically: the workers of a shared study draw into the same folder."""
    width, height = figure.get_size_inches()
    figure.set_size_inches(max(width, MIN_WIDTH_IN), height)
    partial = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
    figure.savefig(partial, dpi=100, bbox_inches="tight")
    plt.close(figure)
    os.replace(partial, path)


def _draw(plot: Plot, study: Study, path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
            axes = getattr(visualization, f"plot_{plot.name}")(study)
        _save(np.ravel(axes)[0].figure, path)
    except Exception:
        log.warning("Could not draw %s", path, exc_info=True)
        return False
    return True


def draw_plots(sweep_dir: Path, snapshot: dict[str, Any]) -> list[Path]:
    """Draw every plot the study has enough completed trials for; return the PNGs written."""
    try:
        study = study_from_snapshot(snapshot)
    except Exception:
        log.warning("Could not rebuild the study of %s for its plots", sweep_dir, exc_info=True)
        return []
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    paths = [sweep_dir / f"{plot.name}.png" for plot in PLOTS]
    return [
        path
        for plot, path in zip(PLOTS, paths, strict=True)
        if complete >= plot.min_complete and _draw(plot, study, path)
    ]


def markdown(sweep_dir: Path, snapshot: dict[str, Any]) -> list[str]:
    """The summary's section on the plots: each PNG in the folder, or why it is missing."""
    complete = sum(t["state"] == "complete" for t in snapshot["trials"])
    lines = ["## Plots"]
    for plot in PLOTS:
        if (sweep_dir / f"{plot.name}.png").exists():
            lines += ["", f"![{plot.title}]({plot.name}.png)"]
        elif complete < plot.min_complete:
            needed = f"{plot.min_complete} completed trial" + ("s" if plot.min_complete > 1 else "")
            lines += ["", f"{plot.title}: needs {needed} ({complete} so far)."]
        else:
            lines += ["", f"{plot.title}: not drawn yet (drawn when a search ends; failures go to its log)."]
    return [*lines, ""]
