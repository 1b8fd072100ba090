"""Benchmark what reading a batch from TorchServe's frontend costs a worker, in one process.

    python scripts/bench_protocol.py [--batch 4] [--rounds 3]

A batch of ``--batch`` MNIST test PNGs, framed as the frontend sends it to a worker with
the headers of the benchmark's client (``digit_classifier.bench.protocol``), written into a
socket and read back by TorchServe's ``retrieve_msg``: with TorchServe's own reads (one
``recv`` per field) and with the handler's buffered ones (``buffered_frontend_reads``),
beside writing the frame and taking it in one ``recv``. Median microseconds per batch,
``--rounds`` times in turn. Writes ``--report`` (logs/bench/protocol.json).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digit_classifier.bench.protocol import read_costs_us
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.samples import mnist_test_pngs
from digit_classifier.checkout import data_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per figure")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/protocol.json"))
    args = parser.parse_args(argv)
    samples = mnist_test_pngs(args.data_dir, args.cache_dir)[: args.batch]
    payloads = [sample.path.read_bytes() for sample in samples]
    rounds = []
    for _ in range(args.rounds):
        costs = read_costs_us(payloads, args.seconds)
        rounds.append(costs)
        print(
            f"batch of {args.batch} ({costs['frame_bytes']} bytes): write + one recv "
            f"{costs['write_and_one_recv_us']:.0f} us; write + TorchServe's read "
            f"{costs['torchserve_read_us']:.0f} us; write + buffered read {costs['buffered_read_us']:.0f} us",
            flush=True,
        )
    write_report(args.report, {"rounds": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
