"""The cluster benchmark: throughput through nginx of 1 TorchServe replica against 2.

``scripts/bench_cluster.py`` is the command line. Each run is a fresh cluster
(:func:`digit_classifier.serving.cluster.private_cluster`, the project's configs, nginx on
a free loopback port) serving one archive; :func:`digit_classifier.bench.load.closed_loop`
drives nginx's ``/api/digit`` after a warm-up. The replica counts take turns, round after
round, so that the machine's drift falls on each alike.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from digit_classifier.bench.load import closed_loop
from digit_classifier.bench.serving import environment, line, median_row
from digit_classifier.serving.cluster import private_cluster


def measure(mar: Path, replicas: int, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """One fresh cluster of ``replicas`` serving ``mar`` (as ``digit.mar``): its summary at
    ``args.concurrency`` clients."""
    with tempfile.TemporaryDirectory(prefix="digit-bench-cluster-") as tmp:
        store = Path(tmp) / "store"
        store.mkdir()
        shutil.copy2(mar, store / "digit.mar")
        with private_cluster(Path(tmp) / "cluster", store, replicas) as cluster:
            url = f"{cluster.url}/api/digit"
            asyncio.run(closed_loop(url, bodies, args.concurrency, args.server_warmup, timeout=args.timeout))
            result = asyncio.run(
                closed_loop(url, bodies, args.concurrency, args.seconds, args.warmup, args.timeout)
            )
    return {"replicas": replicas, **result.summary()}


def report(mar: Path, bodies: list[bytes], args: argparse.Namespace) -> dict[str, Any]:
    """``args.rounds`` rounds of every replica count in turn; medians, and the ratio of each
    count's median throughput to the first count's."""
    runs: dict[int, list[dict[str, Any]]] = {count: [] for count in args.replicas}
    for _ in range(args.rounds):
        for count in args.replicas:
            runs[count].append(measure(mar, count, bodies, args))
            print(line(f"{count} replica(s)", runs[count][-1]), flush=True)
    medians = {count: median_row(rows) for count, rows in runs.items()}
    first = args.replicas[0]
    for count, row in medians.items():
        print(line(f"{count} (median)", row), flush=True)
    ratios = {str(count): round(row["rps"] / medians[first]["rps"], 3) for count, row in medians.items()}
    print(f"throughput against {first} replica(s), medians of {args.rounds} runs: {ratios}")
    return {
        **environment(),
        "archive": str(mar),
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "medians": {str(count): row for count, row in medians.items()},
        "runs": {str(count): rows for count, rows in runs.items()},
        "throughput_ratio": ratios,
    }
