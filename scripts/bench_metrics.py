"""Benchmark what the handler's metrics cost a worker per batch, in one process.

    python scripts/bench_metrics.py [--model model_store/digit.mar] [--batch 4]

On one torch thread, as the workers run: a batch of ``--batch`` MNIST test PNGs (the
shipped batchSize is 4), the handler's own work on it (``prepare_batch``, the forward pass
of the network as the archive serves it, ``batch_responses``) and its metrics: as shipped
(count the batch into the buffer; its flushes, a few calls a second, left out) and
reporting every batch's counts (``metrics_flush_seconds: 0``), one call into TorchServe's
metric cache per sample, whose log lines go to /dev/null. Median microseconds per batch
(``digit_classifier.bench.metrics``). Writes ``--report`` (logs/bench/metrics.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from digit_classifier.bench.metrics import batch_costs_us
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.samples import mnist_test_pngs
from digit_classifier.checkout import data_dir
from digit_classifier.serving.predict import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("model_store/digit.mar"))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per figure")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/metrics.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    payloads = [
        sample.path.read_bytes() for sample in mnist_test_pngs(args.data_dir, args.cache_dir)[: args.batch]
    ]
    network, _ = load_model(args.model)
    result = {"batch": args.batch, **batch_costs_us(network, payloads, args.seconds)}
    print(
        f"batch of {args.batch}: handler work {result['handler_work_us']:.0f} us, "
        f"metrics {result['metrics_us']:.0f} us ({result['metrics_share']:.1%} of it), "
        f"{result['metrics_every_batch_us']:.0f} us reporting every batch's counts "
        f"({result['metrics_every_batch_share']:.1%})"
    )
    write_report(args.report, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
