"""Every option of every config group composes and instantiates; typos fail clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
import yaml
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from ts.model_server import load_properties

from digit_classifier.runtime.preprocessing import ImageLimits
from digit_classifier.serving.torchserve import CONFIG_DIR as TORCHSERVE_CONFIG_DIR
from digit_classifier.web.server import DEFAULT_MAX_BODY_BYTES

CONFIG_DIR = ROOT / "configs"
GROUPS = [
    "data",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "debug",
    "hparams_search",
    "paths",
]
NEEDS_GPU = {("trainer", "gpu"), ("trainer", "ddp")}


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(ROOT)
    HydraConfig().set_config(cfg)
    return cfg


@pytest.mark.parametrize(
    ("group", "option"), [(group, option) for group in GROUPS for option in options(group)]
)
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path) -> None:
    cfg = compose_train([f"{group}={option}"], tmp_path)
    hydra.utils.instantiate(cfg.data)
    model = hydra.utils.instantiate(
        cfg.model, optimizer=cfg.optimizer, scheduler=cfg.get("scheduler") or None
    )
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    if (group, option) in NEEDS_GPU and not torch.cuda.is_available():
        pytest.skip(f"{group}={option} needs a GPU to instantiate its Trainer")
    hydra.utils.instantiate(cfg.trainer)
    for name in ("callbacks", "logger"):
        for entry in (cfg.get(name) or {}).values():
            hydra.utils.instantiate(entry)


def test_seed_baseline_is_the_seed_app(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=seed_baseline"], tmp_path)
    assert cfg.model.net.name == "seed_cnn"
    assert cfg.optimizer._target_ == "torch.optim.Adam"
    assert cfg.optimizer.lr == 0.01
    assert cfg.data.batch_size == 60
    assert cfg.trainer.max_epochs == 4
    assert not cfg.get("scheduler")
    assert not cfg.data.augment
    assert cfg.trainer.precision == "32-true" and not cfg.callbacks.get("ema")


def test_typo_in_a_key_gives_hydras_error() -> None:
    result = subprocess.run(
        [sys.executable, "train.py", "optimizer.lrr=0.1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Could not override 'optimizer.lrr'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("properties", ["config.properties", "config.exposed.properties"])
def test_size_limits_agree_between_torchserve_the_handler_and_the_page(properties: str) -> None:
    """The page server forwards what TorchServe's frontend accepts, and the frontend accepts
    every image the handler's limit allows, with room for the multipart framing."""
    frontend = int(load_properties(str(TORCHSERVE_CONFIG_DIR / properties))["max_request_size"])
    model_config = yaml.safe_load((TORCHSERVE_CONFIG_DIR / "model-config.yaml").read_text())
    handler = model_config["handler"]["max_image_bytes"]
    assert frontend == DEFAULT_MAX_BODY_BYTES
    assert handler == ImageLimits().max_bytes < frontend
