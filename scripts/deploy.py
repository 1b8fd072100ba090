"""Roll a model archive out onto the running servers, or roll back, with no failed request.

    python scripts/deploy.py model_store/digit-2.mar      # make deploy MAR=model_store/digit-2.mar
    python scripts/deploy.py --rollback                    # make rollback

The servers are the replicas of the cluster in ``--cluster`` (logs/cluster) when one runs
there, else the TorchServe of ``--config`` (``scripts/serve.py``'s). On each in turn it
registers the archive's version beside the one serving, waits until the new version
answers ``--probe``, makes it the default, lets the old version finish its requests, and
unregisters it (``digit_classifier.serving.deploy``). The archive must be in the servers'
model store. ``--rollback`` brings back, the same way, the archive rolled out before the
last one, as recorded in the cluster's (or ``--logs``') ``deployments.json``. Exit status:
2 for an archive, probe or history that cannot be used (no server touched), 1 when a server
refuses a step (the servers before it keep the new version; the message says which).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from digit_classifier.serving.cluster import DEFAULT_ROOT, Cluster
from digit_classifier.serving.deploy import (
    DRAIN_GRACE_S,
    Archive,
    DeployError,
    History,
    check_store,
    default_version,
    roll_out_all,
)
from digit_classifier.serving.torchserve import ServeError, TorchServe

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "seven.png"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mar", nargs="?", type=Path, help="the .mar to roll out, in the model store")
    parser.add_argument("--rollback", action="store_true", help="bring back the archive rolled out before")
    parser.add_argument("--cluster", type=Path, default=DEFAULT_ROOT, help="a cluster's folder")
    parser.add_argument("--config", type=Path, default=Path("configs/torchserve/config.properties"))
    parser.add_argument("--logs", type=Path, default=Path("logs/torchserve"), help="the single server's logs")
    parser.add_argument("--probe", type=Path, default=EXAMPLE, help="a PNG the new version must answer")
    parser.add_argument(
        "--drain", type=float, default=DRAIN_GRACE_S, help="seconds for the old version's batches"
    )
    args = parser.parse_args(argv)
    if bool(args.mar) == args.rollback:
        parser.error("give an archive to roll out, or --rollback")
    return args


def targets(args: argparse.Namespace) -> tuple[list[TorchServe], History]:
    """The running cluster's replicas, else the single server; and their rollout history."""
    cluster = Cluster.load(args.cluster)
    if cluster.running():
        return cluster.replicas, History(cluster.history)
    return [TorchServe(Path.cwd(), args.config, args.logs)], History(args.logs / "deployments.json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    servers, history = targets(args)
    print(f"Servers: {', '.join(server.management_url for server in servers)}")
    try:
        probe = args.probe.read_bytes()
        archive = history.previous(servers[0].store) if args.rollback else Archive.read(args.mar)
        check_store(servers, archive)
    except (DeployError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        live = default_version(servers[0], archive.name)
        roll_out_all(servers, archive, probe, args.drain)
    except (DeployError, ServeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.rollback:
        history.rolled_back()
    else:
        history.record(live, archive)
    print(
        f"{archive.name} version {archive.version} ({archive.path.name}) serves on {len(servers)} server(s)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
