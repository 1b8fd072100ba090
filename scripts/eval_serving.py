"""Measure a running TorchServe endpoint on MNIST test, the drawn digits and their variants.

    python scripts/eval_serving.py [--url http://127.0.0.1:8080/predictions/digit]
                                   [--data-dir DIR] [--sets ...] [--concurrency 8] [--check]

Every image goes through HTTP as a PNG file upload, so this measures what users get:
the MNIST test images are written once as PNGs to ``--cache-dir``, the drawn digits are
sent as they are, and the handwriting variants (``scripts/make_variants.py``) are built
into ``--variants-dir`` when missing. Prints accuracy and errors per set and writes a JSON report (with the
misclassified files). ``--check`` makes the exit status 1 when a target is missed
(``digit_classifier.bench.endpoint.TARGETS``); 2 means the data could not be read.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from digit_classifier.bench.endpoint import TARGETS, evaluate
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.samples import DRAWN_DEV, Sample, drawn_digits, mnist_test_pngs
from digit_classifier.bench.variants import VARIANTS_DIR, variant_samples
from digit_classifier.checkout import data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/predictions/digit")
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--drawn-dir", type=Path, help=f"default: <data-dir>/{DRAWN_DEV}")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--variants-dir", type=Path, default=VARIANTS_DIR)
    parser.add_argument("--sets", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    parser.add_argument("--limit", type=int, help="only the first N images of each set (smoke runs)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--token", default=os.environ.get("TS_INFERENCE_TOKEN"), help="inference key, with token auth"
    )
    parser.add_argument("--report", type=Path, default=Path("logs/eval_serving/report.json"))
    parser.add_argument("--max-listed", type=int, default=200, help="misclassified files kept in the report")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    sets: dict[str, list[Sample]] = {}
    try:
        if "mnist_test" in args.sets:
            sets["mnist_test"] = mnist_test_pngs(args.data_dir, args.cache_dir)
        drawn_dir = args.drawn_dir or args.data_dir / DRAWN_DEV
        if "drawn_digits_dev" in args.sets:
            sets["drawn_digits_dev"] = drawn_digits(drawn_dir)
        if "variants" in args.sets:
            sets["variants"] = variant_samples(drawn_dir, args.variants_dir)
    except (OSError, RuntimeError) as error:
        print(f"error: cannot read the evaluation data: {error}", file=sys.stderr)
        return 2
    if args.limit:
        sets = {name: samples[: args.limit] for name, samples in sets.items()}

    report = evaluate(args.url, sets, args.concurrency, args.token, args.max_listed)
    write_report(args.report, report)
    return 1 if args.check and not report["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
