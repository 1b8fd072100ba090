"""Turn a Lightning checkpoint into a plain exported model for serving.

The export is three files: ``weights.pt`` (the network's state dict alone, loadable with
``torch.load(weights_only=True)``), ``network.json`` (``build_network`` name and keyword
arguments) and ``metadata.json`` (where it came from and how well it scored). The
checkpoint itself is read with ``weights_only=True`` too, so exporting never runs
pickled code; Lightning and Hydra are not needed.

:func:`find_checkpoint` picks which checkpoint to export from a run folder, a sweep
folder, a ``.ckpt`` file, or (with no argument) the newest run under ``logs/train``;
the run folder's layout is :mod:`digit_classifier.runs`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from digit_classifier.runs import (
    BEST_CHECKPOINT,
    CHECKPOINT_DIR,
    METRICS_FILE,
    VAL_ACC,
    RunFolder,
    RunMetrics,
    finite_float,
)
from digit_classifier.runtime.inference import (
    METADATA_FILE,
    NETWORK_FILE,
    WEIGHTS_FILE,
    network_from_state,
)
from digit_classifier.sweeps.summary import best_trial

NET_PREFIX = "net."
DEFAULT_LOGS_DIR = Path("logs") / "train"


class ExportError(Exception):
    """A checkpoint or run folder that cannot be exported; the message says why."""


@dataclass(frozen=True)
class ExportedModel:
    directory: Path
    weights: Path
    network: Path
    metadata: Path
    info: dict[str, Any]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"Checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if not found:
            detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(error))
            reason = detail.group(1).strip() if detail else str(error).splitlines()[0]
            raise ExportError(f"{path} is not a readable PyTorch checkpoint ({reason}).") from None
        raise ExportError(
            f"{path} cannot be loaded safely: torch.load(weights_only=True) refused "
            f"{found.group(1)}. Lightning saved a Python object in the checkpoint, usually in "
            "its hyper-parameters (e.g. an OmegaConf DictConfig); save plain dicts instead "
            "(Hydra `_convert_: all`). Export will not unpickle it, since that can run "
            "arbitrary code."
        ) from None
    except Exception as error:
        detail = f"{type(error).__name__}: {error}".rstrip(": ")
        raise ExportError(f"{path} is not a readable PyTorch checkpoint ({detail}).") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ExportError(f"{path} is not a Lightning checkpoint (no 'state_dict').")
    return checkpoint


def network_spec(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """``{"name": ..., **kwargs}`` from ``hyper_parameters["net"]``."""
    spec = (checkpoint.get("hyper_parameters") or {}).get("net")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        raise ExportError(
            "Checkpoint has no network description: expected hyper_parameters['net'] "
            "to be a dict with a 'name'."
        )
    return dict(spec)


def network_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The network's weights: ``state_dict`` entries under ``net.``, prefix removed."""
    state = {
        key.removeprefix(NET_PREFIX): value.detach().clone().contiguous()
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(NET_PREFIX)
    }
    if not state:
        raise ExportError(f"Checkpoint state_dict has no '{NET_PREFIX}*' entries.")
    return state


def checkpoint_val_acc(checkpoint: Mapping[str, Any]) -> float | None:
    """The validation accuracy of the checkpoint's weights: what ``DigitClassifier`` recorded
    when it saved them, else the ``val/acc`` score of a ModelCheckpoint that monitored it."""
    recorded = finite_float(checkpoint.get("val_acc"))
    if recorded is not None:
        return recorded
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if not str(key).startswith("ModelCheckpoint") or not isinstance(state, Mapping):
            continue
        if state.get("monitor") != VAL_ACC:
            continue
        for name in ("current_score", "best_model_score"):
            value = finite_float(state.get(name))
            if value is not None:
                return value
    return None


def run_dir_of(checkpoint_path: Path) -> RunFolder | None:
    """The run folder holding ``<run>/checkpoints/<file>.ckpt``, if it looks like one."""
    parent = checkpoint_path.resolve().parent
    if parent.name != CHECKPOINT_DIR:
        return None
    run = RunFolder(parent.parent)
    return run if run.metrics() is not None or run.config() is not None else None


def best_checkpoint_of_run(run: RunFolder) -> Path:
    checkpoint = run.best_checkpoint()
    if checkpoint is None:
        raise ExportError(
            f"No best checkpoint in run folder {run.path} (looked for {run.default_best_checkpoint})."
        )
    return checkpoint


def best_checkpoint_of_sweep(sweep_dir: Path) -> Path:
    """The best checkpoint of the sweep's best trial, by the sweep summary's own rule."""
    best = best_trial(sweep_dir)
    if best is None or not best.best_ckpt_path:
        raise ExportError(
            f"{sweep_dir} is neither a run folder nor a sweep folder with a finished trial "
            f"(no {METRICS_FILE} with a best checkpoint below it)."
        )
    return Path(best.best_ckpt_path)


def newest_run(logs_dir: Path) -> RunFolder:
    """The most recently finished run under ``logs_dir`` (by metrics or best checkpoint time)."""
    best_name = f"{CHECKPOINT_DIR}/{BEST_CHECKPOINT}.ckpt"
    markers = [*logs_dir.glob(f"**/{METRICS_FILE}"), *logs_dir.glob(f"**/{best_name}")]
    if not markers:
        raise ExportError(f"No training runs under {logs_dir}; train one or pass a path.")
    newest = max(markers, key=lambda path: path.stat().st_mtime)
    return RunFolder(newest.parent if newest.name == METRICS_FILE else newest.parent.parent)


def find_checkpoint(target: str | Path | None = None, logs_dir: str | Path = DEFAULT_LOGS_DIR) -> Path:
    """Pick the checkpoint to export.

    ``target`` may be a ``.ckpt`` file, a run folder (its best checkpoint), a sweep folder
    (the best checkpoint of its best trial, :func:`digit_classifier.sweeps.summary.best_trial`)
    or None (the best checkpoint of the newest run under ``logs_dir``).
    """
    if target is None:
        return best_checkpoint_of_run(newest_run(Path(logs_dir)))
    path = Path(target)
    if path.is_file():
        if path.suffix != ".ckpt":
            raise ExportError(f"Not a checkpoint file (expected .ckpt): {path}")
        return path
    if not path.is_dir():
        raise ExportError(f"No such checkpoint, run folder or sweep folder: {path}")
    if (path / METRICS_FILE).is_file() or (path / CHECKPOINT_DIR).is_dir():
        return best_checkpoint_of_run(RunFolder(path))
    return best_checkpoint_of_sweep(path)


def export_checkpoint(checkpoint_path: str | Path, out_dir: str | Path) -> ExportedModel:
    """Write ``weights.pt``, ``network.json`` and ``metadata.json`` for a checkpoint."""
    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path)
    spec = network_spec(checkpoint)
    state = network_state_dict(checkpoint)
    try:
        network_from_state(spec, state)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ExportError(f"Checkpoint weights do not fit network {spec}: {error}") from None

    info = _metadata(checkpoint_path, checkpoint, spec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, network, metadata = out_dir / WEIGHTS_FILE, out_dir / NETWORK_FILE, out_dir / METADATA_FILE
    torch.save(state, weights)
    network.write_text(json.dumps(spec, indent=2) + "\n")
    metadata.write_text(json.dumps(info, indent=2, default=str) + "\n")
    return ExportedModel(out_dir, weights, network, metadata, info)


def _metadata(checkpoint_path: Path, checkpoint: Mapping[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    run = run_dir_of(checkpoint_path)
    metrics = (run.metrics() if run else None) or RunMetrics()
    is_best = run is not None and _same_file(checkpoint_path, run.best_checkpoint())
    val_acc = checkpoint_val_acc(checkpoint)
    if val_acc is None and is_best:
        val_acc = finite_float(metrics.best_val_acc)
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "source_checkpoint": str(checkpoint_path.resolve()),
        "source_sha256": _sha256(checkpoint_path),
        "run_dir": str(run.path) if run else None,
        "network": spec,
        "val_acc": val_acc,
        "test_acc": finite_float(metrics.test_acc) if is_best else None,
        "test_loss": finite_float(metrics.test_loss) if is_best else None,
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "lightning_version": checkpoint.get("pytorch-lightning_version"),
        "torch_version": torch.__version__,
        "config": run.config() if run else None,
    }


def _same_file(a: Path, b: Path | None) -> bool:
    return b is not None and a.resolve() == b.resolve()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
