"""A sampler whose randomness depends on the trial's place in the study, not on history.

A seeded Optuna sampler draws from one random stream per process. A resumed search starts
that stream again from the seed, and two workers with the same seed propose the same
parameters. Here each trial gets a fresh inner sampler seeded with ``seed + slot``, where
``slot`` is the trial's index among the study's counted trials (see ``_study.slot_of``).
Given the same finished trials, trial *k* is then proposed identically whether the search
ran in one go, was resumed, or is shared by several workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from optuna import Study
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from ._study import slot_of


class SlotSeededSampler(BaseSampler):
    """Delegate to ``factory(seed + slot)``, one inner sampler per running trial."""

    def __init__(self, factory: Callable[[int], BaseSampler], seed: int) -> None:
        self._factory = factory
        self._seed = seed
        self._inner: dict[int, BaseSampler] = {}

    def _sampler(self, study: Study, trial: FrozenTrial) -> BaseSampler:
        if trial.number not in self._inner:
            self._inner[trial.number] = self._factory(self._seed + slot_of(study, trial.number))
        return self._inner[trial.number]

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._inner.pop(trial.number, None)
        self._sampler(study, trial).before_trial(study, trial)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler(study, trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._sampler(study, trial).sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        inner = self._inner.pop(trial.number, None)
        if inner is not None:
            inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial's inner sampler is seeded from its slot."""
