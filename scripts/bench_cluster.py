"""Benchmark the cluster on this machine: throughput through nginx of 1 replica against 2.

    python scripts/bench_cluster.py [model_store/digit.mar] [--replicas 1 2] [--rounds 3]

Serves the archive on a fresh cluster per run (``make serve-cluster``'s configs: each
replica as shipped, 2 workers of one torch thread; nginx in front, on free loopback ports)
and drives ``/api/digit`` with MNIST test PNGs from the serving benchmark's load generator:
``--concurrency`` (8) clients on keep-alive connections, ``--server-warmup`` unmeasured
seconds, then ``--seconds`` measured. The replica counts take turns for ``--rounds``
rounds; it prints each run, the medians and the ratio of median throughputs, and writes
``--report`` (logs/bench/cluster.json).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from digit_classifier.bench.cluster import report
from digit_classifier.bench.load import mnist_uploads
from digit_classifier.bench.reports import write_report
from digit_classifier.checkout import data_dir


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mar", nargs="?", type=Path, default=Path("model_store/digit.mar"))
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before measuring")
    parser.add_argument("--server-warmup", type=float, default=15, help="unmeasured load on each new cluster")
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request, s")
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--images", type=int, default=1000, help="distinct test images cycled through")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/cluster.json"))
    args = parser.parse_args(argv)
    if not args.mar.is_file():
        parser.error(f"{args.mar} not found; build it first (python scripts/archive.py)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        bodies = mnist_uploads(args.data_dir, args.cache_dir, args.images)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs, {len(bodies)} MNIST test PNGs, {args.mar}", flush=True)
    result = report(args.mar, bodies, args)
    write_report(args.report, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
