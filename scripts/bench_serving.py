"""Benchmark TorchServe serving on this machine: latency, throughput, limits, cold start, tuning.

    python scripts/bench_serving.py [RUN_DIR | CKPT]                        # the report
    python scripts/bench_serving.py --tune [--settings workers=1,batch=1 ...]  # the tuning table

The report serves each handler on ``--rounds`` (3) fresh TorchServes in turn, each on free
loopback ports with a private TMPDIR and the project's configs, and drives it with MNIST
test images (PNG uploads, multipart field ``file``) at each ``--concurrency`` (1, 8, 32):

* ``noop``: a handler that answers a fixed JSON without looking at the request
  (handlers/bench/noop_handler.py): what TorchServe and the load generator cost, the ceiling;
* ``preprocess``: the production handler without the network forward
  (handlers/bench/preprocess_only_handler.py);
* ``full``: the production handler (handlers/digit_handler.py).

It prints requests/s, p50/p90/p99 latency and errors, the full handler's throughput as a
fraction of the no-op one's, and the cold start (from starting TorchServe, as
``scripts/serve.py start`` does, to the first answered prediction); writes ``--report``
(logs/bench/serving.json) and ``--plot`` (docs/serving_latency.png).

``--tune`` serves the full handler once per ``--settings`` entry (model-config keys
``workers``, ``batch``, ``delay``; handler section ``threads`` = torch_num_threads, ``buffered`` =
buffered_frontend_reads 0/1; config.properties ``netty`` =
number_of_netty_threads, ``client`` = netty_client_threads, 0 meaning TorchServe's default,
``async`` = async_logging 0/1; ``tslog=1`` = TorchServe's own log4j2.xml instead of the project's)
at ``--tune-concurrency`` (8), ``--rounds`` times each (medians reported), and writes a
markdown table (logs/bench/serving_tuning.md) and JSON (logs/bench/serving_tuning.json).

The load generator (``digit_classifier.bench.load``) is one asyncio/aiohttp process: a
closed loop of ``concurrency`` clients on keep-alive connections, for ``--seconds`` after
``--warmup`` seconds. Each new server first gets ``--server-warmup`` seconds of load:
under its first load the frontend's JVM compiles its hot paths and burns extra CPU, which
would otherwise be charged to the first handler and level measured. The client's CPU time
is reported next to the server's, because on a small machine both share the cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from digit_classifier.bench.load import mnist_uploads
from digit_classifier.bench.reports import write_report
from digit_classifier.bench.serving import HANDLERS, plot, report, tune
from digit_classifier.checkout import data_dir
from digit_classifier.serving.archive import read_metadata
from digit_classifier.serving.export import ExportError, find_checkpoint

DEFAULT_MAR = Path("model_store/digit.mar")
DEFAULT_TUNING = [
    "workers=1,batch=1,delay=1",
    "workers=2,batch=1,delay=1",
    "workers=1,batch=8,delay=1",
    "workers=2,batch=4,delay=1",
    "workers=2,batch=8,delay=1",
    "workers=2,batch=8,delay=5",
    "workers=3,batch=4,delay=1",
    "workers=2,batch=4,delay=1,async=1",
]


def default_target() -> Path | None:
    """The checkpoint model_store/digit.mar was built from, if it is still there."""
    try:
        source = Path(read_metadata(DEFAULT_MAR)["source_checkpoint"])
    except (OSError, KeyError, ValueError):
        return None
    return source if source.is_file() else None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target",
        nargs="?",
        type=Path,
        help="run folder or .ckpt (default: the one model_store/digit.mar came from)",
    )
    parser.add_argument("--data-dir", type=Path, default=data_dir(), help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/mnist-test-png"))
    parser.add_argument("--images", type=int, default=1000, help="distinct test images cycled through")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--handlers", nargs="+", choices=list(HANDLERS), default=list(HANDLERS))
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each level")
    parser.add_argument(
        "--server-warmup",
        type=float,
        default=20,
        help="unmeasured seconds of load on each new server (JVM warm-up)",
    )
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request, s")
    parser.add_argument("--report", type=Path, default=Path("logs/bench/serving.json"))
    parser.add_argument("--plot", type=Path, default=Path("docs/serving_latency.png"))
    parser.add_argument("--tune", action="store_true", help="compare --settings instead of the report")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=DEFAULT_TUNING,
        help="e.g. workers=2,threads=1,batch=8,delay=5,netty=2",
    )
    parser.add_argument("--tune-concurrency", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=3, help="fresh servers per handler or setting (medians)"
    )
    parser.add_argument("--tune-handler", choices=list(HANDLERS), default="full")
    args = parser.parse_args(argv)
    args.target = args.target or default_target()
    if args.target is None:
        parser.error(f"no target given and {DEFAULT_MAR} names no checkpoint that exists here")
    try:
        args.target = find_checkpoint(args.target)
    except ExportError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        bodies = mnist_uploads(args.data_dir, args.cache_dir, args.images)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{os.cpu_count()} CPUs, {len(bodies)} MNIST test PNGs, target {args.target}", flush=True)
    result = tune(args, bodies) if args.tune else report(args, bodies)
    path = args.report.with_name("serving_tuning.json") if args.tune else args.report
    if args.tune:
        write_report(path, result, result["markdown"] + "\n")
    else:
        write_report(path, result)
        plot(result, args.plot)
        print(f"Wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
