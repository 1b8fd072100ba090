"""Start or stop TorchServe replicas behind nginx on this machine (``make serve-cluster``).

    python scripts/cluster.py start [--replicas 2] [--listen 127.0.0.1:8090] [--prometheus 127.0.0.1:9090]
    python scripts/cluster.py status
    python scripts/cluster.py stop

``start`` derives a config per replica from ``--config`` (every API on its own free
loopback port), starts the replicas in parallel, each with its own home, TMPDIR and logs
under ``--root`` (logs/cluster/replica-N), and returns once every one has its model's
workers READY; then nginx on ``--listen`` serves the drawing page at ``/`` and sends
``POST /api/digit`` and ``POST /predictions/digit`` to the replicas. It prints the
replicas' addresses and pids. ``--prometheus`` also starts Prometheus scraping them.
``stop`` stops all of it. Exit status: 2 for a missing archive or config, or a cluster
already running; 1 when a server does not start.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digit_classifier.serving.cluster import DEFAULT_LISTEN, DEFAULT_ROOT, Cluster, start_cluster
from digit_classifier.serving.torchserve import DEFAULT_CONFIG, ServeError, SetupError
from digit_classifier.web.server import parse_origins


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="the cluster's folder")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--listen", default=DEFAULT_LISTEN, help="nginx's address")
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="config.properties to derive from"
    )
    parser.add_argument("--model-store", type=Path, default=Path("model_store"))
    parser.add_argument("--models", nargs="*", default=[], help="e.g. digit=digit.mar (default: load_models)")
    parser.add_argument("--cors-origins", default="*", help="origins allowed to call /api/digit, or *")
    parser.add_argument(
        "--prometheus", metavar="ADDRESS", help="also start Prometheus there, e.g. 127.0.0.1:9090"
    )
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the replicas")
    return parser.parse_args(argv)


def start(args: argparse.Namespace) -> Cluster:
    cluster = start_cluster(
        args.root,
        args.model_store,
        args.replicas,
        args.listen,
        args.config,
        models=args.models,
        cors_origins=parse_origins(args.cors_origins),
        timeout=args.timeout,
    )
    if args.prometheus:
        prometheus = cluster.prometheus(args.prometheus)
        prometheus.start()
        print(f"Prometheus: {prometheus.url}/ scraping {cluster.prometheus_config}")
    return cluster


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.action == "start":
            cluster = start(args)
            print("\n".join(cluster.describe()))
            print(f"Try: curl -F file=@examples/seven.png {cluster.url}/api/digit")
        elif args.action == "stop":
            print("\n".join(Cluster.load(args.root).stop()) or "Nothing was running.")
        else:
            cluster = Cluster.load(args.root)
            print("\n".join(cluster.describe()))
            return 0 if cluster.running() else 1
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (ServeError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
