"""Hydra's official Optuna sweeper beside ours, on the same tiny searches.

In a scratch environment with both plugins (docs/sweeps.md has the install commands):

    python scripts/compare_sweepers.py [--sweepers digit_optuna optuna] [--out compare.json]

Each scenario runs ``train.py -m`` (a few batches per trial, ``debug=fast``, on the MNIST in
DIGIT_DATA_DIR) with ``hydra/sweeper=<sweeper>``, reads the study back from its SQLite file,
and checks one thing our sweeper promises (docs/sweeps.md). Prints a table; ``--out`` also
writes what each scenario saw as JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from digit_classifier.bench.sweepers import compare, package_version


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweepers", nargs="+", default=["digit_optuna", "optuna"])
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="compare-sweepers-") as root:
        results = compare(args.sweepers, Path(root))
    versions = {name: package_version(name) for name in ("hydra-core", "hydra-optuna-sweeper", "optuna")}
    print(json.dumps(versions))
    if args.out:
        args.out.write_text(json.dumps({"versions": versions, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
