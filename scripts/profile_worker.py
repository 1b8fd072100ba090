"""Profile live TorchServe workers under load with py-spy: where each request's CPU time goes.

    python scripts/profile_worker.py [RUN | CKPT] [--seconds 15] [--before logs/bench/profile_before.json]

Serves the full handler (the project's configs) on a private TorchServe, warms it up,
then drives it with the benchmark's closed loop while py-spy samples every worker, and
prints and writes (``--report``) the CPU milliseconds per request of each stage: PNG
decoding, preprocessing, the forward pass, building the batch and the answers,
TorchServe's metrics, logging, its protocol and its worker loop. ``--before`` puts an
earlier report beside it in the table (``logs/bench/profile.md``); py-spy's raw stacks stay
in ``logs/bench/profile/`` (``flamegraph.pl`` or speedscope read them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from digit_classifier.bench.load import closed_loop, multipart
from digit_classifier.bench.profile import markdown, profile_workers
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.samples import mnist_test_pngs
from digit_classifier.bench.serving import HANDLERS, served
from digit_classifier.checkout import data_dir
from digit_classifier.serving.export import ExportError, find_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="run folder or .ckpt (default: the newest run)")
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--handler", choices=list(HANDLERS), default="full")
    parser.add_argument(
        "--mar", type=Path, help="serve this archive as it is (e.g. one built by an older commit)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=15, help="unmeasured load first (JVM warm-up)")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--before", type=Path, help="an earlier report to compare with")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/profile.json"))
    args = parser.parse_args(argv)
    try:
        target = None if args.mar else find_checkpoint(args.target)
    except ExportError as error:
        parser.error(str(error))
    bodies = [
        multipart(s.path.read_bytes(), s.path.name)
        for s in mnist_test_pngs(args.data_dir, args.cache_dir)[:1000]
    ]
    with served(target, HANDLERS[args.handler], {}, bodies[0], mar=args.mar) as running:
        asyncio.run(closed_loop(running.url, bodies, args.concurrency, args.warmup))
        raw_dir = args.report.with_suffix("")
        result = profile_workers(
            running.url, running.pid, bodies, args.concurrency, args.seconds, args.rate, raw_dir
        )
    result["handler"] = str(args.mar) if args.mar else args.handler
    before = json.loads(args.before.read_text()) if args.before else None
    write_report(args.report, result, markdown(before, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
