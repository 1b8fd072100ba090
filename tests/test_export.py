"""Checkpoint selection and export: run folders, sweeps, bare checkpoints, unsafe pickles."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from serving_support import ROOT, archive, make_fake_run

from digit_classifier.runtime.inference import load_network
from digit_classifier.runtime.networks import build_network
from digit_classifier.serving.archive import build_archive, next_version, read_metadata
from digit_classifier.serving.export import ExportError, export_checkpoint, find_checkpoint, load_checkpoint
from digit_classifier.serving.torchserve import read_manifest


def test_run_folder_gives_its_best_checkpoint(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "run")
    assert find_checkpoint(run) == run / "checkpoints" / "best.ckpt"


def test_best_ckpt_path_from_another_machine_falls_back(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "best_ckpt_path": "/elsewhere/best.ckpt"}))
    assert find_checkpoint(run) == run / "checkpoints" / "best.ckpt"


def test_sweep_picks_highest_best_val_acc(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    for trial, score in enumerate([0.91, 0.97, None, 0.95]):
        make_fake_run(sweep / str(trial), best_val_acc=score)
    (sweep / "optimization_results.yaml").write_text("best_value: 0.97\n")
    assert find_checkpoint(sweep) == sweep / "1" / "checkpoints" / "best.ckpt"


def test_no_target_gives_newest_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "train"
    old = make_fake_run(logs / "runs" / "2024-01-01_00-00-00")
    new = make_fake_run(logs / "multiruns" / "2024-01-02_00-00-00" / "0")
    os.utime(old / "metrics.json", (1, 1))
    assert find_checkpoint(None, logs) == new / "checkpoints" / "best.ckpt"


@pytest.mark.parametrize("kind", ["missing", "not a ckpt", "empty dir"])
def test_bad_targets(tmp_path: Path, kind: str) -> None:
    target = {"missing": tmp_path / "nope", "not a ckpt": tmp_path / "x.txt", "empty dir": tmp_path}[kind]
    if kind == "not a ckpt":
        target.write_text("x")
    with pytest.raises(ExportError):
        find_checkpoint(target)


def test_export_roundtrip(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "run", net={"name": "seed_cnn"})
    exported = export_checkpoint(run / "checkpoints" / "best.ckpt", tmp_path / "out")
    state = torch.load(exported.weights, weights_only=True)
    assert not any(key.startswith("net.") for key in state)
    assert json.loads(exported.network.read_text()) == {"name": "seed_cnn"}
    assert exported.info["val_acc"] == 0.5 and exported.info["test_acc"] == 0.25
    reference = build_network("seed_cnn")
    reference.load_state_dict(
        {
            key.removeprefix("net."): value
            for key, value in torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)[
                "state_dict"
            ].items()
        }
    )
    images = torch.randn(3, 1, 28, 28)
    with torch.inference_mode():
        assert torch.equal(load_network(tmp_path / "out")(images), reference.eval()(images))


def test_last_checkpoint_has_no_run_test_scores(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path / "run")
    exported = export_checkpoint(run / "checkpoints" / "last.ckpt", tmp_path / "out")
    assert exported.info["test_acc"] is None and exported.info["val_acc"] == 0.5


def test_unsafe_checkpoint_is_refused_with_the_reason(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": OmegaConf.create({"name": "digit_cnn"})}}, path)
    with pytest.raises(ExportError, match=r"DictConfig.*weights_only|weights_only.*DictConfig"):
        load_checkpoint(path)


def test_archive_cli_exit_codes(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "archive.py")]
    missing = subprocess.run([*script, str(tmp_path / "nope")], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and "nope" in missing.stderr
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    junk = subprocess.run(
        [*script, str(tmp_path / "junk.ckpt")], capture_output=True, text=True, cwd=tmp_path
    )
    assert junk.returncode == 2 and "not a readable PyTorch checkpoint" in junk.stderr
    nothing = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path)
    assert nothing.returncode == 2 and "No training runs" in nothing.stderr


def test_versions_count_up_in_the_model_store(tmp_path: Path) -> None:
    """An archive gets the next whole number unless told otherwise; its own file name keeps the
    archive before it in the store."""
    store = tmp_path / "store"
    first = archive(make_fake_run(tmp_path / "run0"), store)
    tagged = archive(
        make_fake_run(tmp_path / "run1"), store, "--file", "digit-rc.mar", "--version", "2026.12-rc1"
    )
    assert read_manifest(first)["model"]["modelVersion"] == "1"
    assert read_manifest(tagged)["model"]["modelVersion"] == "2026.12-rc1"
    assert read_metadata(tagged)["model_version"] == "2026.12-rc1"
    assert next_version(store, "digit") == "2"
    assert next_version(store, "other") == "1"


@pytest.mark.parametrize(
    ("names", "message"), [({"version": "1/2"}, "Version '1/2'"), ({"file_name": "../x.mar"}, "File name")]
)
def test_archive_refuses_versions_and_files_that_are_not_names(
    tmp_path: Path, names: dict[str, str], message: str
) -> None:
    checkpoint = make_fake_run(tmp_path / "run") / "checkpoints" / "best.ckpt"
    with pytest.raises(ExportError, match=re.escape(message)):
        build_archive(checkpoint, tmp_path / "store", **names)
