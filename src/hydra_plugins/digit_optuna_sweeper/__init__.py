"""Our Optuna sweeper for Hydra (``hydra/sweeper=digit_optuna``), built on Optuna 4+.

Hydra finds it because ``hydra_plugins`` is a namespace package and ``src/`` is importable
(the editable install puts it on the module search path).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from lightning import Callback

TRIALS_FILE = "optuna_trials.json"
"""The study's snapshot, written into the sweep folder after every trial."""
TRIAL_KEY = "optuna_trial"
"""The config node through which the sweeper tells each job its study and trial number."""


def attach_trial(study_name: str, number: int) -> optuna.Trial:
    """The running trial ``number`` of ``study_name``, for reporting from a training job."""
    from ._study import attach_trial as attach

    return attach(study_name, number)


def optuna_pruning(trial: Mapping[str, Any] | None, monitor: str) -> Callback:
    """The pruning callback for the sweep's trial, or a no-op callback without one.

    Each validation epoch reports ``monitor`` to the trial; when the study's pruner
    judges the trial hopeless it raises ``optuna.TrialPruned``, which ends ``fit`` and
    reaches the sweeper as the job's error, recorded as a pruned trial.
    """
    from lightning import Callback

    from ._pruning import TrialPruning

    if not trial:
        return Callback()
    return TrialPruning(attach_trial(str(trial["study"]), int(trial["number"])), monitor=monitor)
