"""Package a checkpoint as a TorchServe model archive: exactly what inference needs.

A ``.mar`` holds the handler, the ``digit_classifier/runtime`` folder (packed whole, with
the package's import-free ``__init__.py`` so that it imports under its own name), the
exported weights and ``network.json``, ``metadata.json`` and the model config; nothing
else. :func:`check_archive` enforces that list.

Every archive carries a model version, which TorchServe registers it under and
``scripts/deploy.py`` rolls out by: by default one more than the highest whole-number
version of that model in the model store (:func:`next_version`), so versions count up
1, 2, 3 in the order they were archived; ``metadata.json`` says which run each came from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
import yaml

import digit_classifier
from digit_classifier.checkout import HANDLERS
from digit_classifier.runtime.inference import (
    METADATA_FILE,
    MODEL_CONFIG_FILE,
    NETWORK_FILE,
    WEIGHTS_FILE,
    handler_settings,
    load_network,
    served_precision,
)
from digit_classifier.runtime.precision import CALIBRATION_FILE
from digit_classifier.serving.calibration import int8_ranges
from digit_classifier.serving.export import ExportError, export_checkpoint
from digit_classifier.serving.torchserve import CONFIG_DIR, MANIFEST, read_manifest

PACKAGE_DIR = Path(digit_classifier.__file__).parent
RUNTIME_DIR = PACKAGE_DIR / "runtime"
HANDLER = HANDLERS / "digit_handler.py"
DEFAULT_MODEL_CONFIG = CONFIG_DIR / "model-config.yaml"
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""A version is a path segment of TorchServe's management API (``/models/digit/<version>``)."""


def runtime_files() -> list[Path]:
    """The package's ``__init__.py`` and every module of ``runtime/``, relative to ``src/``."""
    modules = sorted(path for path in RUNTIME_DIR.rglob("*.py") if "__pycache__" not in path.parts)
    return [path.relative_to(PACKAGE_DIR.parent) for path in [PACKAGE_DIR / "__init__.py", *modules]]


def stage_extra_files(extra: Path) -> None:
    """Copy the runtime to ``extra``, which the archiver lays next to the handler."""
    for relative in runtime_files():
        (extra / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PACKAGE_DIR.parent / relative, extra / relative)


def build_archive(
    checkpoint: Path,
    model_store: Path,
    name: str = "digit",
    model_config: Path = DEFAULT_MODEL_CONFIG,
    version: str | None = None,
    handler: Path = HANDLER,
    file_name: str | None = None,
) -> Path:
    """Export ``checkpoint`` and run torch-model-archiver; returns the ``.mar`` path.

    The archive is ``model_store/<file_name>`` (default ``<name>.mar``), its version
    ``version`` (default :func:`next_version`). Another ``handler`` (the benchmark handlers
    in ``handlers/bench``) is packed with the production handler beside it, so that it can
    subclass ``DigitHandler``.
    """
    for path, what in ((model_config, "Model config"), (handler, "Handler")):
        if not path.is_file():
            raise ExportError(f"{what} not found: {path}")
    version = version or next_version(model_store, name)
    file_name = file_name or f"{name}.mar"
    check_names(version, file_name)
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="digit-archive-") as tmp:
        stage = Path(tmp)
        extra = stage / "extra"
        stage_extra_files(extra)
        if handler.resolve() != HANDLER.resolve():
            shutil.copy2(HANDLER, extra / HANDLER.name)
        exported = export_checkpoint(checkpoint, stage / "export")
        shutil.copy2(exported.network, extra / NETWORK_FILE)
        metadata = {"model_name": name, "model_version": version, **exported.info}
        (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        if precision_in(model_config) == "int8":
            torch.save(int8_ranges(load_network(exported.directory)), extra / CALIBRATION_FILE)
        files = {"handler": handler, "serialized-file": exported.weights, "extra-files": extra}
        (stage / "out").mkdir()
        run_archiver(name, version, files, model_config, stage / "out", stage / "archiver-tmp")
        mar = model_store / file_name
        shutil.move(stage / "out" / f"{name}.mar", mar)
    check_archive(mar, handler)
    return mar


def precision_in(model_config: Path) -> str:
    """The ``precision`` the model config's handler section asks for (float32 by default)."""
    return served_precision(handler_settings(yaml.safe_load(model_config.read_text())))


def check_names(version: str, file_name: str) -> None:
    if not VERSION_PATTERN.fullmatch(version):
        raise ExportError(f"Version {version!r}: use letters, digits, '.', '_' and '-' only.")
    if Path(file_name).name != file_name or not file_name.endswith(".mar"):
        raise ExportError(f"File name {file_name!r}: give a .mar file name, without a folder.")


def run_archiver(
    name: str, version: str, files: dict[str, Path], model_config: Path, export_path: Path, work: Path
) -> None:
    """``torch-model-archiver``, in a private TMPDIR: it assembles files in ``$TMPDIR/<name>``,
    where concurrent runs would clobber each other."""
    command = [sys.executable, "-m", "model_archiver.model_packaging", "--model-name", name]
    command += ["--version", version, "--config-file", str(model_config), "--export-path", str(export_path)]
    for option, path in files.items():
        command += [f"--{option}", str(path)]
    work.mkdir()
    result = subprocess.run(
        [*command, "--force"], env={**os.environ, "TMPDIR": str(work)}, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RuntimeError(f"torch-model-archiver failed:\n{result.stdout}{result.stderr}")


def expected_files(handler: Path = HANDLER, int8: bool = False) -> set[str]:
    """Every file a ``.mar`` built with ``handler`` holds (and its activation ranges, int8)."""
    return {
        *([CALIBRATION_FILE] if int8 else []),
        MANIFEST,
        HANDLER.name,
        handler.name,
        WEIGHTS_FILE,
        NETWORK_FILE,
        METADATA_FILE,
        MODEL_CONFIG_FILE,
        *(path.as_posix() for path in runtime_files()),
    }


def check_archive(mar: Path, handler: Path = HANDLER) -> None:
    """Fail loudly if the archive lacks a file the handler needs, or holds any other."""
    with zipfile.ZipFile(mar) as archive:
        names = {name for name in archive.namelist() if not name.endswith("/")}
        config = yaml.safe_load(archive.read(MODEL_CONFIG_FILE)) or {}
    expected = expected_files(handler, served_precision(handler_settings(config)) == "int8")
    if names != expected:
        raise RuntimeError(
            f"{mar}: missing {sorted(expected - names)}, unexpected {sorted(names - expected)}"
        )


def read_metadata(mar: Path) -> dict:
    with zipfile.ZipFile(mar) as archive:
        return json.loads(archive.read(METADATA_FILE))


def next_version(model_store: Path, name: str) -> str:
    """One more than the highest whole-number version of model ``name`` in ``model_store``."""
    versions = [0]
    for mar in model_store.glob("*.mar"):
        try:
            model = read_manifest(mar)["model"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            continue
        if model.get("modelName") == name and str(model.get("modelVersion", "")).isdigit():
            versions.append(int(model["modelVersion"]))
    return str(max(versions) + 1)
