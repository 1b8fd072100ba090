"""Composing the Hydra configs (``checkout.CONFIGS``) outside ``@hydra.main``: benchmarks, tests."""

from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from digit_classifier.checkout import CONFIGS


def compose_config(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The config ``python train.py <overrides>`` would run, without Hydra's run folder."""
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(config_name, overrides=overrides)
