"""Hydra Sweeper plugin ``hydra/sweeper=digit_optuna``: Optuna 4+ search, resumable, shareable.

Kept light on purpose: Hydra imports every ``hydra_plugins`` module at start-up, so Optuna
is only imported when a sweep starts. No ``from __future__ import annotations``: Hydra's
plugin scan runs this module before it is in ``sys.modules``, where ``dataclass`` would look
its string annotations up.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import MISSING, DictConfig


@dataclass
class DigitOptunaSweeperConf:
    _target_: str = "hydra_plugins.digit_optuna_sweeper.optuna_sweeper.DigitOptunaSweeper"
    _recursive_: bool = False
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "nop"}])

    # Optuna sampler and pruner: `_target_` nodes, see hydra/sweeper/{sampler,pruner} options.
    # A sampler with a `seed` is reseeded per trial (seed + trial slot): reproducible, resumable.
    sampler: Any = MISSING
    pruner: Any = MISSING
    direction: str = "maximize"
    study_name: str | None = None
    # An Optuna storage URL (sqlite:///file.db, postgresql://user@host/db), a `_target_` node
    # (e.g. optuna.storages.JournalStorage), or null for an in-memory study.
    storage: Any = None
    # Seconds a SQLite writer waits for the lock held by another worker.
    sqlite_timeout: float = 60.0
    # Storage heartbeat (RDB storages): trials of dead workers on other hosts are failed and
    # retried once not heard from for grace_period seconds. Same-host workers are checked by pid.
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    # Counted trials (finished or running) in the study, over all workers and restarts.
    n_trials: int = 20
    # Trials launched together; >1 only helps with a parallel Hydra launcher.
    n_jobs: int = 1
    # Fraction of this worker's trials allowed to fail (exceptions, not pruning) before it stops.
    max_failure_rate: float = 0.0
    # Search space, in Hydra's override grammar: {key: "tag(log, interval(1e-4, 1e-2))", ...}
    params: dict[str, str] | None = None


SAMPLERS = {
    "tpe": {
        "_target_": "optuna.samplers.TPESampler",
        "seed": None,
        "n_startup_trials": 10,
        "multivariate": False,
        "constant_liar": False,
    },
    "random": {"_target_": "optuna.samplers.RandomSampler", "seed": None},
}
PRUNERS = {
    "nop": {"_target_": "optuna.pruners.NopPruner"},
    "median": {
        "_target_": "optuna.pruners.MedianPruner",
        "n_startup_trials": 5,
        "n_warmup_steps": 0,
        "interval_steps": 1,
    },
    "threshold": {
        "_target_": "optuna.pruners.ThresholdPruner",
        "lower": None,
        "upper": None,
        "n_warmup_steps": 0,
    },
    "hyperband": {
        "_target_": "optuna.pruners.HyperbandPruner",
        "min_resource": 1,
        "max_resource": "auto",
        "reduction_factor": 3,
    },
}

_store = ConfigStore.instance()
_store.store(group="hydra/sweeper", name="digit_optuna", node=DigitOptunaSweeperConf, provider="digit")
for _name, _node in SAMPLERS.items():
    _store.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="digit")
for _name, _node in PRUNERS.items():
    _store.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="digit")


class DigitOptunaSweeper(Sweeper):
    """Runs an Optuna study through Hydra's launcher; see ``_impl.OptunaSearch``."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.search: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from ._impl import OptunaSearch

        self.search = OptunaSearch(**self.settings)
        self.search.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.search.sweep(arguments)
