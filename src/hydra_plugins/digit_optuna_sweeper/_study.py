"""Study bookkeeping shared by the sweeper and the training job.

Three user attributes mark how a trial counts:

* ``worker`` (``host:pid``): who runs it, so a trial left RUNNING by a dead process on
  this host can be recognised at once (other hosts: the storage heartbeat).
* ``retry_of`` (trial number): this trial reruns the parameters of an interrupted one;
  the interrupted trial then no longer counts.
* ``surplus``: asked after the study was already full (a race between workers) and
  failed straight away without running; it does not count either.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_object, instantiate
from omegaconf import OmegaConf
from optuna import Study
from optuna.distributions import distribution_to_json
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError

log = logging.getLogger(__name__)

HOST = socket.gethostname()
WORKER = f"{HOST}:{os.getpid()}"

LIVE: dict[str, tuple[Study, BaseStorage]] = {}
"""Studies opened by a sweeper in this process, so in-process jobs reuse them (and so
in-memory studies work with the basic launcher)."""

StaleCallback = Callable[[Study, FrozenTrial], None]


def known_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A sampler or pruner node without (and warning about) the settings its target lacks.

    A preset tunes e.g. ``pruner.n_warmup_steps`` for the median pruner; switching to
    ``hydra/sweeper/pruner=hyperband`` on the command line keeps those keys in the node.
    """
    parameters = inspect.signature(get_object(config["_target_"])).parameters
    if any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
        return dict(config)
    unknown = [k for k in config if not k.startswith("_") and k not in parameters]
    if unknown:
        log.warning("%s takes no %s; ignored", config["_target_"], ", ".join(unknown))
    return {k: v for k, v in config.items() if k not in unknown}


def instantiate_known(config: Mapping[str, Any]) -> Any:
    return instantiate(known_settings(config))


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, or ``None`` for other URLs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(os.path.normpath(os.path.abspath(parsed.database)))


def make_storage(
    storage: Any,
    *,
    sqlite_timeout: float = 60.0,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    stale_callback: StaleCallback | None = None,
) -> BaseStorage:
    """Build the storage from its config: ``None`` (in memory), a URL, or a ``_target_`` node.

    SQLite files are created with their folder and opened with a busy timeout, so that
    concurrent workers wait for the write lock instead of failing with "database is locked".
    """
    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, BaseStorage):
        return storage
    if isinstance(storage, Mapping):
        return instantiate(storage)
    url = str(storage)
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path}"
        engine_kwargs = {"connect_args": {"timeout": sqlite_timeout}}
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=stale_callback,
                )
        except (IntegrityError, OperationalError):
            # Workers started together race to create the schema of a new database.
            if attempt == 4:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def redacted(storage: Any) -> str | None:
    """The storage URL without its password, for logs and summaries."""
    if storage is None or not isinstance(storage, str):
        return None if storage is None else type(storage).__name__
    path = sqlite_path(storage)
    if path is not None:
        return f"sqlite:///{path}"
    return make_url(storage).render_as_string(hide_password=True)


def replaced_numbers(trials: list[FrozenTrial]) -> set[int]:
    return {int(t.user_attrs["retry_of"]) for t in trials if "retry_of" in t.user_attrs}


def counted(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that make up the search: not replaced by a retry, not surplus."""
    replaced = replaced_numbers(trials)
    return [t for t in trials if t.number not in replaced and not t.user_attrs.get("surplus")]


def slot_of(study: Study, number: int) -> int:
    """How many counted trials come before trial ``number``: its place in the search."""
    return sum(t.number < number for t in counted(study.get_trials(deepcopy=False)))


def trial_id(storage: BaseStorage, study_name: str, number: int) -> int:
    study_id = storage.get_study_id_from_name(study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def enqueue_retry(study: Study, trial: FrozenTrial) -> None:
    """Queue the parameters of an interrupted trial as a new trial that takes its place."""
    log.warning("Trial %d was interrupted; retrying its parameters", trial.number)
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


def fail_and_retry(study: Study, storage: BaseStorage, trial: FrozenTrial) -> bool:
    """Mark a RUNNING trial failed and queue its retry, unless another worker got there first."""
    try:
        changed = storage.set_trial_state_values(
            trial_id(storage, study.study_name, trial.number), state=TrialState.FAIL
        )
    except UpdateFinishedTrialError:
        return False
    if changed:
        enqueue_retry(study, trial)
    return changed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def recover_dead_trials(study: Study, storage: BaseStorage) -> None:
    """Fail and retry trials left RUNNING by dead workers.

    Workers on this host are checked by process id; others through the storage heartbeat
    (``heartbeat_interval``), which fails trials not heard from within ``grace_period``.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if host == HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            fail_and_retry(study, storage, trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def attach_trial(study_name: str, number: int) -> optuna.Trial:
    """The running trial ``number`` of ``study_name``, for reporting from the training job.

    Inside the sweeper's process the sweeper's own study is used; elsewhere (another
    launcher process) the study is reopened from the storage and pruner that
    ``hydra.sweeper`` configures.
    """
    if study_name in LIVE:
        study, storage = LIVE[study_name]
    else:
        sweeper = HydraConfig.get().sweeper
        if sweeper.get("storage") is None:
            raise RuntimeError(
                f"Study {study_name!r} is in memory in another process; configure "
                "hydra.sweeper.storage to prune from jobs that run in their own process."
            )
        storage = make_storage(sweeper.storage, sqlite_timeout=sweeper.get("sqlite_timeout", 60))
        pruner_config = (
            OmegaConf.to_container(sweeper.pruner, resolve=True) if sweeper.get("pruner") else None
        )
        pruner = instantiate_known(pruner_config) if pruner_config else None
        study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    return optuna.Trial(study, trial_id(storage, study_name, number))


def _trial_record(trial: FrozenTrial, replaced: set[int]) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
        "params": trial.params,
        "distributions": {name: distribution_to_json(d) for name, d in trial.distributions.items()},
        "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()},
        "user_attrs": trial.user_attrs,
        "replaced": trial.number in replaced,
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "duration_s": duration,
    }


def export_study(study: Study, storage_config: Any, n_trials: int, path: Path) -> None:
    """Write the study's trials to ``path`` (JSON), replacing it atomically."""
    trials = study.get_trials(deepcopy=False)
    replaced = replaced_numbers(trials)
    best = None
    with contextlib.suppress(ValueError):
        best = study.best_trial.number
    record = {
        "study_name": study.study_name,
        "storage": redacted(storage_config),
        "direction": study.direction.name.lower(),
        "n_trials": n_trials,
        "best_trial": best,
        "trials": [_trial_record(t, replaced) for t in trials],
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
