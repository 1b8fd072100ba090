"""Package a trained checkpoint as a TorchServe model archive (``model_store/digit.mar``).

    python scripts/archive.py [RUN_DIR | SWEEP_DIR | CKPT] [--model-store model_store] [--name digit]
                              [--version N] [--file digit.mar]

With no path, the newest run under ``logs/train`` is used; a sweep folder gives the best
checkpoint of its best trial (the sweep summary's rule). The version defaults to one more
than the highest whole-number version of the model in the model store; archive a model
you mean to roll out under its own ``--file`` (``digit-2.mar``), so that the one it
replaces stays there to roll back to. The archive holds the handler,
the ``digit_classifier/runtime`` folder, the exported weights and network description,
metadata and the model config, and nothing else. Exit status 2 means the path or
checkpoint was unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digit_classifier.serving.archive import DEFAULT_MODEL_CONFIG, HANDLER, build_archive, read_metadata
from digit_classifier.serving.export import DEFAULT_LOGS_DIR, ExportError, find_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="run folder, sweep folder or .ckpt (default: newest run)")
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--name", default="digit", help="model name, and the .mar file name")
    parser.add_argument("--version", help="model version (default: the next whole number in the store)")
    parser.add_argument("--file", help="file name in the model store (default: <name>.mar)")
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
            checkpoint, args.model_store, args.name, args.model_config, args.version, args.handler, args.file
        )
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = read_metadata(mar)
    print(f"Wrote {mar} ({mar.stat().st_size / 1024:.0f} KiB) from {checkpoint}")
    print(f"  model {metadata['model_name']}, version {metadata['model_version']}")
    print(f"  network {metadata['network']}, val_acc {metadata['val_acc']}, test_acc {metadata['test_acc']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
