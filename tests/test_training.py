"""Short real training runs through train.py and eval.py, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SMALL_TEST, run_script, small_run_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def baseline_run(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("runs") / "baseline"
    run_script("train.py", *small_run_overrides(small_mnist, output))
    return output


def test_run_folder_holds_config_logs_checkpoints_and_metrics(baseline_run: Path) -> None:
    assert (baseline_run / ".hydra" / "config.yaml").is_file()
    assert (baseline_run / "checkpoints" / "best.ckpt").is_file()
    assert (baseline_run / "checkpoints" / "last.ckpt").is_file()
    metrics = _metrics(baseline_run)
    assert metrics["epochs"] == 2
    assert 0 <= metrics["best_val_acc"] <= 1 and 0 <= metrics["test_acc"] <= 1
    assert Path(metrics["best_ckpt_path"]) == (baseline_run / "checkpoints" / "best.ckpt").resolve()
    assert Path(metrics["last_ckpt_path"]) == (baseline_run / "checkpoints" / "last.ckpt").resolve()
    assert torch.load(metrics["last_ckpt_path"], weights_only=True)["epoch"] == 1


def test_tensorboard_shows_curves_pictures_and_hparams(baseline_run: Path) -> None:
    events = EventAccumulator(str(baseline_run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    for scalar in ("train/loss_step", "train/acc", "val/loss", "val/acc", "val/acc_best", "lr-AdamW"):
        assert scalar in tags["scalars"], scalar
    for image in ("examples/train_batch", "val/confusion_matrix", "val/misclassified"):
        assert image in tags["images"], image
    assert "_hparams_/session_start_info" in events.summary_metadata


def test_same_config_and_seed_give_identical_numbers_and_weights(
    baseline_run: Path, small_mnist: Path, tmp_path: Path
) -> None:
    run_script("train.py", *small_run_overrides(small_mnist, tmp_path / "again"))
    first, second = _metrics(baseline_run), _metrics(tmp_path / "again")
    for key in ("best_val_acc", "test_acc", "test_loss"):
        assert first[key] == second[key], key
    a = _weights(baseline_run / "checkpoints" / "last.ckpt")
    b = _weights(tmp_path / "again" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_run_killed_mid_epoch_resumes_to_the_same_result(
    baseline_run: Path, small_mnist: Path, tmp_path: Path
) -> None:
    """SIGKILL in epoch 2, resume from last.ckpt: the uninterrupted run's weights, bit for bit."""
    crashed = tmp_path / "crashed"
    kill = ["+callbacks.kill._target_=faults.KillAt", "+callbacks.kill.epoch=1", "+callbacks.kill.batch=3"]
    result = run_script("train.py", *small_run_overrides(small_mnist, crashed, *kill), check=False)
    assert result.returncode == -9
    assert not (crashed / "metrics.json").exists()
    last = crashed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0

    resumed = tmp_path / "resumed"
    run_script("train.py", *small_run_overrides(small_mnist, resumed, f"ckpt_path={last}"))
    assert _metrics(resumed)["epochs"] == 2
    a = _weights(baseline_run / "checkpoints" / "last.ckpt")
    b = _weights(resumed / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a[name], b[name]) for name in a)
    for key in ("best_val_acc", "test_acc", "test_loss"):
        assert _metrics(resumed)[key] == _metrics(baseline_run)[key], key


def test_eval_reports_test_accuracy_and_loss(baseline_run: Path, small_mnist: Path, tmp_path: Path) -> None:
    best = baseline_run / "checkpoints" / "best.ckpt"
    run_script(
        "eval.py",
        f"ckpt_path={best}",
        f"data.data_dir={small_mnist}",
        "data.download=false",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path}",
    )
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["test/acc"] == pytest.approx(_metrics(baseline_run)["test_acc"])
    assert report["test/loss"] > 0
    errors = report["test_errors"]
    assert all(true != predicted for true, _, predicted in (pair.partition("->") for pair in errors))
    assert sum(errors.values()) == round((1 - report["test/acc"]) * SMALL_TEST)
    assert list(errors.values()) == sorted(errors.values(), reverse=True)


@pytest.mark.ddp
def test_ddp_on_two_cpu_processes(small_mnist: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    result = run_script(
        "train.py",
        *small_run_overrides(small_mnist, run, "trainer=ddp_cpu", "trainer.max_epochs=1"),
    )
    output = result.stdout + result.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output
    metrics = _metrics(run)
    assert metrics["epochs"] == 1 and metrics["test_acc"] is not None


def test_seed_baseline_experiment_trains(small_mnist: Path, tmp_path: Path) -> None:
    run_script(
        "train.py",
        *small_run_overrides(small_mnist, tmp_path, "experiment=seed_baseline", "trainer.max_epochs=1"),
    )
    metrics = _metrics(tmp_path)
    assert metrics["epochs"] == 1 and metrics["test_acc"] is not None
    checkpoint = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["net"] == {"name": "seed_cnn"}


def test_a_run_without_a_logger_trains(small_mnist: Path, tmp_path: Path) -> None:
    run_script("train.py", *small_run_overrides(small_mnist, tmp_path, "logger=none", "trainer.max_epochs=1"))
    assert _metrics(tmp_path)["test_acc"] is not None
    assert not (tmp_path / "tensorboard").exists()
