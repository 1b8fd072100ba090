"""Shared fixtures: where MNIST is, a small MNIST copy for fast training runs, running train.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("DIGIT_DATA_DIR", ROOT / "data")).resolve()
"""The folder holding ``MNIST/raw/`` (and the drawn digits, where they exist): as for training."""
RAW_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
HAVE_MNIST = all((DATA_DIR / "MNIST" / "raw" / name).is_file() for name in RAW_FILES)
os.environ.setdefault("DIGIT_DATA_DIR", str(DATA_DIR))
"""Where archives find the MNIST images an int8 model is calibrated on (downloaded when absent)."""

requires_mnist = pytest.mark.skipif(
    not HAVE_MNIST,
    reason=f"needs the MNIST raw files under {DATA_DIR}/MNIST/raw (set DIGIT_DATA_DIR)",
)

SMALL_TRAIN, SMALL_TEST = 1200, 400


@pytest.fixture(autouse=True)
def _restore_determinism():
    """Lightning's ``deterministic=True`` switches PyTorch's deterministic mode on for the whole
    process and leaves it on; int8 kernels have no deterministic variant, so a handler test
    after an in-process training run would fail where a TorchServe worker never does."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in MNIST's IDX format, which torchvision reads."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _small_split(train: bool, count: int) -> tuple[np.ndarray, np.ndarray]:
    if HAVE_MNIST:
        from torchvision.datasets import MNIST

        full = MNIST(DATA_DIR, train=train, download=False)
        return full.data[:count].numpy(), full.targets[:count].numpy()
    generator = torch.Generator().manual_seed(0 if train else 1)
    labels = torch.arange(count) % 10
    images = torch.zeros(count, 28, 28)
    for digit in range(10):
        rows = labels == digit
        images[rows, 4 + digit * 2 : 8 + digit * 2, 6:22] = 1.0
    images += 0.2 * torch.rand(count, 28, 28, generator=generator)
    return (images.clamp(0, 1) * 255).byte().numpy(), labels.byte().numpy()


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with a small MNIST in torchvision's layout: real digits when the
    MNIST files are here, a synthetic stand-in otherwise, so training mechanics are
    tested on any machine."""
    root = tmp_path_factory.mktemp("small_mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for train, prefix, count in ((True, "train", SMALL_TRAIN), (False, "t10k", SMALL_TEST)):
        images, labels = _small_split(train, count)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def script_env() -> dict[str, str]:
    """The environment for a repo entry point: the tests folder is on PYTHONPATH so that
    overrides can name test-only callbacks (``faults.KillAt``)."""
    python_path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path}


def run_script(
    script: str, *overrides: str, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a repo entry point (train.py, eval.py, ...) as a user would, failing loudly."""
    result = subprocess.run(
        [sys.executable, str(ROOT / script), *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=script_env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def small_run_overrides(data_dir: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides for a short, complete training run on ``small_mnist``."""
    return [
        f"data.data_dir={data_dir}",
        "data.val_size=200",
        "data.batch_size=100",
        "data.eval_batch_size=200",
        "data.download=false",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=2",
        f"hydra.run.dir={output_dir}",
        *extra,
    ]
