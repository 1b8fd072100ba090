"""Benchmark the training recipe against the seed app's: wall time, accuracy, what users get.

    python scripts/bench_recipe.py [--rounds 1] [--target 0.99] [--override KEY=VALUE ...]
                                   [--experiment NAME ...]

In one run: trains ``python train.py experiment=seed_baseline`` and ``python train.py``
(the default), and ``python train.py experiment=NAME`` for each ``--experiment``, ``--rounds``
times, alternating, timing each whole command as a user runs it;
measures the default configuration's time to ``--target`` test accuracy (training time
only, as ``scripts/bench_train.py --time-to-accuracy``); then archives every trained model,
serves each from a private TorchServe, and sends every MNIST test image, every drawn digit
of ``<data>/drawn-digits-dev`` and every handwriting variant (``scripts/make_variants.py``;
built into ``--variants-dir`` when missing) through the endpoint as PNG uploads. Prints a
table and writes ``logs/bench/recipe.json`` and ``logs/bench/recipe.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from digit_classifier.bench.recipe import (
    recipe_markdown,
    summary,
    through_endpoint,
    time_to_target,
    train_rounds,
)
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.samples import Sample
from digit_classifier.bench.variants import VARIANTS_DIR, evaluation_sets
from digit_classifier.checkout import CONFIGS, data_dir


def endpoint_sets(args: argparse.Namespace) -> dict[str, list[Sample]]:
    sets = evaluation_sets(args.data_dir, args.cache_dir, args.variants_dir)
    return {name: samples[: args.limit] for name, samples in sets.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="seed/default training pairs, alternating")
    parser.add_argument(
        "--target", type=float, default=0.99, help="test accuracy for the time-to-accuracy run"
    )
    parser.add_argument("--override", action="append", default=[], help="a Hydra override for every run")
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        help="also train, time and serve configs/experiment/NAME.yaml (for example accurate)",
    )
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--variants-dir", type=Path, default=VARIANTS_DIR)
    parser.add_argument(
        "--runs-dir", type=Path, help="where the trained runs go (default: a temporary folder)"
    )
    parser.add_argument("--limit", type=int, help="only the first N images of each set (smoke runs)")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/recipe.json"))
    args = parser.parse_args(argv)
    for name in args.experiment:
        if not (CONFIGS / "experiment" / f"{name}.yaml").is_file():
            parser.error(f"no experiment {name!r} in {CONFIGS / 'experiment'}")
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="bench-recipe-"))
    report = {"runs": train_rounds(args.rounds, args.override, runs_dir, args.experiment)}
    report["summary"] = summary(report["runs"])
    report["time_to_accuracy"] = time_to_target(args.override, args.target)
    sets = endpoint_sets(args)
    report["endpoint"] = {
        name: through_endpoint(Path(runs[-1]["run_dir"]), sets) for name, runs in report["runs"].items()
    }
    write_report(args.report, report, recipe_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
