"""Hydra's official Optuna sweeper beside ours, on the same tiny searches
(``scripts/compare_sweepers.py``).

Each scenario runs ``train.py -m`` (a few batches per trial, ``debug=fast``, on the MNIST in
DIGIT_DATA_DIR) with ``hydra/sweeper=<sweeper>``, reads the study back from its SQLite file,
and checks one thing our sweeper promises (docs/sweeps.md).
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from digit_classifier.checkout import CHECKOUT as ROOT

SPACE = [
    "optimizer.lr=tag(log, interval(1e-4, 1e-2))",
    "data.batch_size=choice(32, 64, 128)",
    "model.net.dropout=interval(0.0, 0.5)",
]
PRUNING = [
    "+callbacks.optuna_pruning._target_=hydra_plugins.digit_optuna_sweeper.optuna_pruning",
    "+callbacks.optuna_pruning.trial=${optuna_trial}",
    "+callbacks.optuna_pruning.monitor=val/acc",
    "hydra/sweeper/pruner=threshold",
    "hydra.sweeper.pruner.lower=1.01",
    "trainer.max_epochs=2",
]


@dataclass
class Search:
    """One study of ``sweeper`` in ``folder``: its SQLite file and its sweep folder."""

    sweeper: str
    folder: Path

    @property
    def storage(self) -> str:
        return f"sqlite:///{self.folder / 'study.db'}"

    def command(self, n_trials: int, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(ROOT / "train.py"),
            "-m",
            *SPACE,
            "debug=fast",
            "logger=none",
            "callbacks.lr_monitor=null",
            f"hydra/sweeper={self.sweeper}",
            f"hydra.sweep.dir={self.folder / 'sweep'}",
            f"hydra.sweeper.storage={self.storage}",
            "hydra.sweeper.study_name=compare",
            "hydra.sweeper.direction=maximize",
            "hydra.sweeper.n_jobs=1",
            "hydra.sweeper.sampler.seed=1234",
            f"hydra.sweeper.n_trials={n_trials}",
            *extra,
        ]

    def start(self, n_trials: int, *extra: str) -> subprocess.Popen:
        """Start a run in its own process group, its output in a log file of the folder."""
        with (self.folder / f"{time.monotonic_ns()}.log").open("w") as log:
            return subprocess.Popen(
                self.command(n_trials, *extra),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def run(self, n_trials: int, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(n_trials, *extra), cwd=ROOT, capture_output=True, text=True)

    def trials(self) -> list[FrozenTrial]:
        return optuna.load_study(study_name="compare", storage=self.storage).trials

    def in_its_folder(self, trial: FrozenTrial) -> bool:
        """Whether the folder named by the trial's number ran that trial's learning rate."""
        overrides = self.folder / "sweep" / str(trial.number) / ".hydra" / "overrides.yaml"
        if not overrides.exists():
            return False
        ran = dict(o.split("=", 1) for o in yaml.safe_load(overrides.read_text()))
        return math.isclose(float(ran["optimizer.lr"]), trial.params["optimizer.lr"], rel_tol=1e-9)


def _params(trials: list[FrozenTrial]) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE]


def _repeats(trials: list[FrozenTrial]) -> int:
    params = _params(trials)
    return len(params) - len(set(params))


def _error(result: subprocess.CompletedProcess) -> str:
    """Hydra's message, without the warnings and tracebacks around it."""
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    return " ".join(line for line in lines[-2:] if not line.startswith((" ", "[")))[:200]


def search_runs_n_trials(search: Search) -> dict[str, Any]:
    result = search.run(3)
    if result.returncode != 0:
        return {"ok": False, "seen": f"failed: {_error(result)}"}
    trials = search.trials()
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    named = sum(search.in_its_folder(t) for t in trials)
    return {"ok": complete == 3 and named == 3, "seen": f"{complete} complete, {named} in their own folder"}


def rerun_continues_to_the_total(search: Search) -> dict[str, Any]:
    search.run(2)
    search.run(3)
    trials = search.trials()
    named = sum(search.in_its_folder(t) for t in trials)
    return {
        "ok": len(trials) == 3 and named == 3,
        "seen": f"n_trials=2, then 3: {len(trials)} trials, {named} in the folder named by their number",
    }


def resumed_search_repeats_no_trial(search: Search) -> dict[str, Any]:
    search.run(2)
    search.run(4)
    trials = search.trials()
    repeats = _repeats(trials)
    return {"ok": repeats == 0, "seen": f"{repeats} of {len(trials)} trials repeat earlier parameters"}


def killed_trial_is_retried(search: Search, attempts: int = 3) -> dict[str, Any]:
    """Kill a search in its second trial, rerun it, and look for that trial's retry.

    The kill comes from outside, once the trial's folder appears, so the trial may finish
    first; the scenario then starts again in a fresh folder, up to ``attempts`` times.
    """
    for attempt in range(attempts):
        retry = Search(search.sweeper, search.folder / f"attempt-{attempt}")
        retry.folder.mkdir()
        seen = _killed_in_trial_1(retry)
        if seen is not None:
            return seen
    return {"ok": False, "seen": f"trial 1 finished before the kill {attempts} times"}


def _killed_in_trial_1(search: Search) -> dict[str, Any] | None:
    first = search.start(3)
    sweep = search.folder / "sweep"
    deadline = time.monotonic() + 300
    while not ((sweep / "0" / "metrics.json").exists() and (sweep / "1" / ".hydra").exists()):
        if first.poll() is not None or time.monotonic() > deadline:
            return {"ok": False, "seen": "the first run ended before its second trial"}
        time.sleep(0.1)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    if search.trials()[1].state != TrialState.RUNNING:
        return None
    search.run(3)
    trials = search.trials()
    killed = trials[1]
    retried = [t for t in trials[2:] if t.params == killed.params and t.state == TrialState.COMPLETE]
    states = ", ".join(t.state.name.lower() for t in trials)
    return {"ok": bool(retried) and killed.state != TrialState.RUNNING, "seen": f"states {states}"}


def two_workers_share_the_trials(search: Search) -> dict[str, Any]:
    workers = [search.start(3), search.start(3)]
    for worker in workers:
        worker.wait(timeout=600)
    trials = search.trials()
    repeats = _repeats(trials)
    return {
        "ok": len(trials) == 3 and repeats == 0,
        "seen": f"{len(trials)} trials for n_trials=3, {repeats} repeating another's parameters",
    }


def pruning_stops_a_hopeless_trial(search: Search) -> dict[str, Any]:
    result = search.run(1, *PRUNING)
    if result.returncode != 0:
        return {"ok": False, "seen": f"rejected: {_error(result)}"}
    states = [t.state.name.lower() for t in search.trials()]
    return {"ok": states == ["pruned"], "seen": f"states {', '.join(states)}"}


SCENARIOS: dict[str, Callable[[Search], dict[str, Any]]] = {
    "a search runs n_trials, each in its own folder": search_runs_n_trials,
    "a rerun continues to n_trials in total": rerun_continues_to_the_total,
    "a resumed search repeats no trial (seeding by trial)": resumed_search_repeats_no_trial,
    "a killed trial is retried on rerun": killed_trial_is_retried,
    "two workers share n_trials, no repeats": two_workers_share_the_trials,
    "pruning stops a hopeless trial": pruning_stops_a_hopeless_trial,
}


def compare(sweepers: list[str], root: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for claim, scenario in SCENARIOS.items():
        for sweeper in sweepers:
            folder = root / sweeper / scenario.__name__
            folder.mkdir(parents=True)
            started = time.perf_counter()
            seen = scenario(Search(sweeper, folder))
            seen["seconds"] = round(time.perf_counter() - started, 1)
            results.setdefault(claim, {})[sweeper] = seen
            print(f"{sweeper:>12}  {'yes' if seen['ok'] else 'NO ':3}  {claim}: {seen['seen']}", flush=True)
    return results


def package_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None
