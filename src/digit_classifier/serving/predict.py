"""Classify PNG files offline, exactly as the TorchServe handler would.

    python -m digit_classifier.serving.predict --model MODEL image.png [image.png ...]

``MODEL`` is an exported folder (``weights.pt`` + ``network.json``), a ``.mar``, a
``.ckpt``, or a run or sweep folder (its best checkpoint). Each image gets one JSON line
on stdout, the served body plus its ``file``:
``{"file": ..., "prediction": 7, "percentages": [...]}``. Images that cannot be
classified are reported on stderr with the HTTP status the server would answer, and the
exit status is 1; 2 means the model could not be loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from digit_classifier.runtime.inference import (
    MODEL_CONFIG_FILE,
    NETWORK_FILE,
    WEIGHTS_FILE,
    PreparedBatch,
    batch_responses,
    for_inference,
    handler_settings,
    limits_from_config,
    load_for_serving,
    network_from_state,
    predict_probabilities,
    prepare_batch,
)
from digit_classifier.runtime.precision import CALIBRATION_FILE
from digit_classifier.runtime.preprocessing import ImageLimits
from digit_classifier.serving.export import (
    ExportError,
    find_checkpoint,
    load_checkpoint,
    network_spec,
    network_state_dict,
)


class ModelLoadError(Exception):
    """The model path is missing or holds no loadable model; exit status 2."""


def _handler_settings(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MODEL_CONFIG_FILE
    if not path.is_file():
        return {}
    import yaml

    return handler_settings(yaml.safe_load(path.read_text()))


def _from_directory(model_dir: Path) -> tuple[nn.Module, ImageLimits]:
    settings = _handler_settings(model_dir)
    return load_for_serving(model_dir, settings), limits_from_config(settings)


def _from_archive(mar: Path) -> tuple[nn.Module, ImageLimits]:
    with tempfile.TemporaryDirectory(prefix="digit-mar-") as tmp:
        with zipfile.ZipFile(mar) as archive:
            for name in (WEIGHTS_FILE, NETWORK_FILE, MODEL_CONFIG_FILE, CALIBRATION_FILE):
                if name in archive.namelist():
                    archive.extract(name, tmp)
        return _from_directory(Path(tmp))


def _from_checkpoint(target: Path) -> tuple[nn.Module, ImageLimits]:
    try:
        checkpoint = load_checkpoint(find_checkpoint(target))
        network = network_from_state(network_spec(checkpoint), network_state_dict(checkpoint))
        return for_inference(network), ImageLimits()
    except ExportError as error:
        raise ModelLoadError(str(error)) from None


def load_model(target: str | Path) -> tuple[nn.Module, ImageLimits]:
    """The network and the image limits the served model would use."""
    path = Path(target)
    try:
        if path.is_dir() and (path / WEIGHTS_FILE).is_file():
            return _from_directory(path)
        if path.is_file() and path.suffix == ".mar":
            return _from_archive(path)
        if path.exists():
            return _from_checkpoint(path)
    except ModelLoadError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"Cannot load model from {path}: {error}") from None
    raise ModelLoadError(f"No such model: {path}")


def classify(model: nn.Module, payloads: Sequence[bytes], limits: ImageLimits) -> list[dict[str, Any]]:
    """The handler's response bodies for these PNG payloads, in order."""
    batch: PreparedBatch = prepare_batch(payloads, limits)
    batch.probabilities = predict_probabilities(model, batch.images)
    return batch_responses(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="exported dir, .mar, .ckpt, run or sweep folder")
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args(argv)
    try:
        model, limits = load_model(args.model)
    except ModelLoadError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = False
    readable: list[tuple[Path, bytes]] = []
    for path in args.images:
        try:
            readable.append((path, path.read_bytes()))
        except OSError as error:
            failed = True
            print(f"{path}: cannot read file ({error.strerror})", file=sys.stderr)
    responses = classify(model, [payload for _, payload in readable], limits)
    for (path, _), response in zip(readable, responses, strict=True):
        if "error" in response:
            failed = True
            print(f"{path}: {response['error']} (status {response['status']})", file=sys.stderr)
        else:
            print(json.dumps({"file": str(path), **response}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
