"""The search loop: ask Optuna, launch the trial through Hydra's launcher, tell the result."""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna import Study
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from . import TRIAL_KEY, TRIALS_FILE, _study
from ._sampler import SlotSeededSampler
from ._space import SearchSpace, parse_search_space

log = logging.getLogger(__name__)


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_sampler(config: Any) -> BaseSampler | None:
    """The configured sampler; one with a seed becomes a ``SlotSeededSampler``."""
    config = _plain(config)
    if not config:
        return None
    config = _study.known_settings(config)
    seed = config.get("seed")
    if seed is None:
        return instantiate(config)
    return SlotSeededSampler(lambda s: instantiate(config, seed=s), int(seed))


class OptunaSearch:
    """One worker of an Optuna study.

    Workers (this process, a rerun of it, or processes on other machines sharing the
    storage) ask for trials until the study holds ``n_trials`` counted trials.
    """

    def __init__(
        self,
        sampler: Any,
        pruner: Any = None,
        direction: str = "maximize",
        study_name: str | None = None,
        storage: Any = None,
        sqlite_timeout: float = 60.0,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        max_failure_rate: float = 0.0,
        params: Any = None,
    ) -> None:
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError("max_failure_rate must be within [0, 1]")
        self.sampler_config = _plain(sampler)
        self.pruner_config = _plain(pruner)
        self.direction = direction
        self.study_name = study_name
        self.storage_config = _plain(storage)
        self.sqlite_timeout = sqlite_timeout
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.n_trials = n_trials
        self.n_jobs = max(1, n_jobs)
        self.max_failure_rate = max_failure_rate
        self.params = _plain(params) or {}
        self.launcher: Launcher | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def open_study(self) -> tuple[Study, BaseStorage]:
        """Create the study, or load it when the storage already holds one of that name."""
        storage = _study.make_storage(
            self.storage_config,
            sqlite_timeout=self.sqlite_timeout,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            stale_callback=_study.enqueue_retry,
        )
        study = optuna.create_study(
            storage=storage,
            study_name=self.study_name,
            sampler=build_sampler(self.sampler_config),
            pruner=_study.instantiate_known(self.pruner_config) if self.pruner_config else None,
            direction=self.direction,
            load_if_exists=True,
        )
        return study, storage

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        space = parse_search_space(self.params, arguments)
        study, storage = self.open_study()
        _study.LIVE[study.study_name] = (study, storage)
        log.info(
            "Study %s in %s: %d trials, %s, searching %s",
            study.study_name,
            _study.redacted(self.storage_config) or "memory",
            self.n_trials,
            type(study.sampler).__name__,
            ", ".join(space.distributions) or "nothing",
        )
        returns: list[JobReturn] = []
        try:
            self._run(study, storage, space, sweep_dir, returns)
        finally:
            _study.LIVE.pop(study.study_name, None)
        if not returns:
            self._snapshot(study, sweep_dir)
        self._finish(study, sweep_dir)
        return returns

    def _run(
        self,
        study: Study,
        storage: BaseStorage,
        space: SearchSpace,
        sweep_dir: Path,
        returns: list[JobReturn],
    ) -> None:
        failures: list[BaseException] = []
        while True:
            trials = self._ask(study, storage, space)
            if not trials:
                return
            for batch in _consecutive(trials):
                jobs = [[*space.overrides(t.params), *_trial_overrides(study, t)] for t in batch]
                with (
                    _abandon_on_interrupt(study, storage, batch),
                    _heartbeat(study, storage, batch),
                ):
                    results = self.launcher.launch(jobs, initial_job_idx=batch[0].number)
                for trial, result in zip(batch, results, strict=True):
                    error = _tell(study, trial, result)
                    if error is not None:
                        failures.append(error)
                returns.extend(results)
                self._snapshot(study, sweep_dir)
            if failures and len(failures) / max(len(returns), 1) > self.max_failure_rate:
                raise RuntimeError(
                    f"{len(failures)} of {len(returns)} trials failed "
                    f"(max_failure_rate={self.max_failure_rate})"
                ) from failures[-1]

    def _ask(self, study: Study, storage: BaseStorage, space: SearchSpace) -> list[optuna.Trial]:
        """Up to ``n_jobs`` new trials, none once the study is full."""
        trials: list[optuna.Trial] = []
        _study.recover_dead_trials(study, storage)
        for _ in range(self.n_jobs):
            taken = [
                t for t in _study.counted(study.get_trials(deepcopy=False)) if t.state != TrialState.WAITING
            ]
            if len(taken) >= self.n_trials:
                break
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = study.ask(space.distributions)
            trial.set_user_attr("worker", _study.WORKER)
            if _study.slot_of(study, trial.number) >= self.n_trials:
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=TrialState.FAIL)
                break
            trials.append(trial)
        return trials

    def _snapshot(self, study: Study, sweep_dir: Path) -> None:
        _study.export_study(study, self.storage_config, self.n_trials, sweep_dir / TRIALS_FILE)

    def _finish(self, study: Study, sweep_dir: Path) -> None:
        try:
            best = study.best_trial
        except ValueError:
            log.warning("No trial of study %s completed", study.study_name)
            return
        log.info("Best trial %d: %s = %s", best.number, self.direction, best.value)
        log.info("Best parameters: %s", best.params)
        results = {
            "name": "optuna",
            "study_name": study.study_name,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
        }
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def _consecutive(trials: Sequence[optuna.Trial]) -> Iterator[list[optuna.Trial]]:
    """Split into runs of consecutive numbers: the launcher names job folders idx, idx+1, ..."""
    batch: list[optuna.Trial] = []
    for trial in trials:
        if batch and trial.number != batch[-1].number + 1:
            yield batch
            batch = []
        batch.append(trial)
    if batch:
        yield batch


def _trial_overrides(study: Study, trial: optuna.Trial) -> list[str]:
    """Tell the job which trial it is, so a pruning callback can report to it."""
    return [f"++{TRIAL_KEY}.study={study.study_name}", f"++{TRIAL_KEY}.number={trial.number}"]


def _tell(study: Study, trial: optuna.Trial, result: JobReturn) -> BaseException | None:
    """Record a job's outcome; return the error of a failed (not pruned) job."""
    if result.status != JobStatus.COMPLETED:
        error = result._return_value
        if isinstance(error, optuna.TrialPruned):
            study.tell(trial, state=TrialState.PRUNED)
            log.info("Trial %d pruned: %s", trial.number, error)
            return None
        study.tell(trial, state=TrialState.FAIL)
        log.error("Trial %d failed", trial.number, exc_info=error)
        return error if isinstance(error, BaseException) else RuntimeError(str(error))
    try:
        value = float(result.return_value)
    except (TypeError, ValueError):
        study.tell(trial, state=TrialState.FAIL)
        message = f"Trial {trial.number} returned {result.return_value!r}, not a number"
        log.error(message)
        return ValueError(message)
    study.tell(trial, value)
    log.info("Trial %d finished: %s", trial.number, value)
    return None


@contextmanager
def _abandon_on_interrupt(
    study: Study, storage: BaseStorage, trials: Sequence[optuna.Trial]
) -> Iterator[None]:
    """On Ctrl-C (or SystemExit), fail this batch's unfinished trials and queue their retries."""
    try:
        yield
    except BaseException:
        for trial in trials:
            frozen = storage.get_trial(_study.trial_id(storage, study.study_name, trial.number))
            if frozen.state == TrialState.RUNNING:
                _study.fail_and_retry(study, storage, frozen)
        raise


@contextmanager
def _heartbeat(study: Study, storage: BaseStorage, trials: Sequence[optuna.Trial]) -> Iterator[None]:
    """Record the storage heartbeat of running trials while the launcher runs them."""
    interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
    if not interval:
        yield
        return
    stop = threading.Event()
    ids = [_study.trial_id(storage, study.study_name, t.number) for t in trials]

    def beat() -> None:
        while not stop.is_set():
            for trial_id in ids:
                storage.record_heartbeat(trial_id)
            stop.wait(interval)

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
