"""Package a trained checkpoint as a TorchServe model archive (``model_store/digit.mar``).

    python scripts/archive.py [RUN_DIR | SWEEP_DIR | CKPT] [--model-store model_store] [--name digit]

With no path, the newest run under ``logs/train`` is used; a sweep folder gives its
trial with the highest ``best_val_acc``. Only inference files go into the archive: the
handler, the ``digit_classifier`` modules it imports, the exported weights and network
description, metadata and the model config. Exit status 2 means the path or checkpoint
was unusable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from digit_classifier import __version__  # noqa: E402
from digit_classifier.export import DEFAULT_LOGS_DIR, ExportError, export_checkpoint, find_checkpoint  # noqa: E402
from digit_classifier.inference import METADATA_FILE, MODEL_CONFIG_FILE, NETWORK_FILE, WEIGHTS_FILE  # noqa: E402

HANDLER = ROOT / "handlers" / "digit_handler.py"
PACKAGE = ROOT / "src" / "digit_classifier"
INFERENCE_MODULES = ("networks.py", "preprocessing.py", "inference.py")
DEFAULT_MODEL_CONFIG = ROOT / "configs" / "torchserve" / "model-config.yaml"
PACKAGE_INIT = '''"""Inference-only subset of digit_classifier, shipped inside the TorchServe .mar."""

__version__ = "{version}"
'''


def stage_extra_files(stage: Path) -> Path:
    """A folder whose contents the archiver copies next to the handler in the model dir."""
    extra = stage / "extra"
    package = extra / "digit_classifier"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PACKAGE_INIT.format(version=__version__))
    for module in INFERENCE_MODULES:
        shutil.copy2(PACKAGE / module, package / module)
    return extra


def build_archive(
    checkpoint: Path,
    model_store: Path,
    name: str,
    model_config: Path,
    version: str = "1.0",
    handler: Path = HANDLER,
) -> Path:
    """Export ``checkpoint`` and run torch-model-archiver; returns the ``.mar`` path.

    Another ``handler`` (the benchmark handlers in ``handlers/bench``) is packed with the
    production handler beside it, so that it can subclass ``DigitHandler``.
    """
    if not model_config.is_file():
        raise ExportError(f"Model config not found: {model_config}")
    if not handler.is_file():
        raise ExportError(f"Handler not found: {handler}")
    model_store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="digit-archive-") as tmp:
        stage = Path(tmp)
        extra = stage_extra_files(stage)
        if handler.resolve() != HANDLER.resolve():
            shutil.copy2(HANDLER, extra / HANDLER.name)
        exported = export_checkpoint(checkpoint, stage / "export")
        shutil.copy2(exported.network, extra / NETWORK_FILE)
        metadata = {"model_name": name, "model_version": version, **exported.info}
        (extra / METADATA_FILE).write_text(json.dumps(metadata, indent=2, default=str) + "\n")
        command = [
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--model-name",
            name,
            "--version",
            version,
            "--handler",
            str(handler),
            "--serialized-file",
            str(exported.weights),
            "--extra-files",
            str(extra),
            "--config-file",
            str(model_config),
            "--export-path",
            str(model_store),
            "--force",
        ]
        # The archiver assembles files in $TMPDIR/<name>; a private TMPDIR keeps
        # concurrent archive runs from clobbering each other.
        work = stage / "archiver-tmp"
        work.mkdir()
        result = subprocess.run(
            command, env={**os.environ, "TMPDIR": str(work)}, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"torch-model-archiver failed:\n{result.stdout}{result.stderr}")
    mar = model_store / f"{name}.mar"
    check_archive(mar, handler)
    return mar


def check_archive(mar: Path, handler: Path = HANDLER) -> None:
    """Fail loudly if the archive lacks something the handler needs."""
    expected = {
        "MAR-INF/MANIFEST.json",
        HANDLER.name,
        handler.name,
        WEIGHTS_FILE,
        NETWORK_FILE,
        METADATA_FILE,
        MODEL_CONFIG_FILE,
        "digit_classifier/__init__.py",
        *(f"digit_classifier/{module}" for module in INFERENCE_MODULES),
    }
    with zipfile.ZipFile(mar) as archive:
        names = set(archive.namelist())
    missing = expected - names
    if missing:
        raise RuntimeError(f"{mar} is missing {sorted(missing)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="run folder, sweep folder or .ckpt (default: newest run)")
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--name", default="digit", help="model name, and the .mar file name")
    parser.add_argument("--version", default="1.0")
    parser.add_argument("--model-config", type=Path, default=DEFAULT_MODEL_CONFIG)
    parser.add_argument(
        "--handler", type=Path, default=HANDLER, help="handler file (benchmarks: handlers/bench/*.py)"
    )
    parser.add_argument(
        "--logs-dir", type=Path, default=DEFAULT_LOGS_DIR, help="where to look with no target"
    )
    args = parser.parse_args(argv)
    try:
        checkpoint = find_checkpoint(args.target, args.logs_dir)
        mar = build_archive(
            checkpoint, args.model_store, args.name, args.model_config, args.version, args.handler
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with zipfile.ZipFile(mar) as archive:
        metadata = json.loads(archive.read(METADATA_FILE))
    print(f"Wrote {mar} ({mar.stat().st_size / 1024:.0f} KiB) from {checkpoint}")
    print(f"  network {metadata['network']}, val_acc {metadata['val_acc']}, test_acc {metadata['test_acc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
