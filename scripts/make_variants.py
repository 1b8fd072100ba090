"""Build the handwriting-variants test set: slashed zeros, crossed sevens, flagged ones, overshoots.

    python scripts/make_variants.py [--data-dir DIR] [--out data/drawn-variants] [--per-digit 20]

The slashes, crossbars, flags and feet are drawn onto the pen-drawn digits of
``<data>/drawn-digits-dev`` at the pen's own width; the overshooting digits are drawn from
stroke templates; each image is exported one of five canvas ways
(``digit_classifier.bench.variants``). Writes the PNGs and an ``index.csv``; the same
command makes the same files.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from digit_classifier.bench.samples import DRAWN_DEV
from digit_classifier.bench.variants import VARIANTS_DIR, build
from digit_classifier.checkout import data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help=f"holds {DRAWN_DEV}/")
    parser.add_argument("--out", type=Path, default=VARIANTS_DIR)
    parser.add_argument("--per-digit", type=int, default=20, help="overshooting drawings per digit")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    if not (args.data_dir / DRAWN_DEV / "index.csv").is_file():
        print(f"error: no {DRAWN_DEV}/index.csv under {args.data_dir}", file=sys.stderr)
        return 2
    samples = build(args.data_dir / DRAWN_DEV, args.out, args.per_digit, args.seed)
    kinds = Counter(sample.groups["variant"] for sample in samples)
    print(f"Wrote {len(samples)} PNGs to {args.out}: {dict(kinds)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
