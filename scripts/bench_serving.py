"""Compare TorchServe worker and thread counts on this machine.

    python scripts/bench_serving.py [RUN_DIR | CKPT] [--configs 1x1 1x2 2x1 2x2] [--requests 2000]

For each ``WORKERSxTHREADS`` setting the model is archived with that ``minWorkers`` /
``maxWorkers`` and ``handler.torch_num_threads``, served on free ports with a private
TMPDIR, warmed up, and sent ``--requests`` PNG uploads at ``--concurrency``. Prints
throughput and latency percentiles; pick the fastest for configs/torchserve.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs" / "torchserve"
DEFAULT_DATA_DIR = Path(os.environ.get("DIGIT_DATA_DIR", ROOT.parent / "shared" / "data"))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def payloads(data_dir: Path, count: int = 200) -> list[bytes]:
    drawn = sorted((data_dir / "drawn-digits-dev").glob("*/*/*.png"))
    if not drawn:
        raise SystemExit(f"No drawn digits under {data_dir}/drawn-digits-dev (set DIGIT_DATA_DIR)")
    return [path.read_bytes() for path in drawn[:: max(1, len(drawn) // count)]]


async def load(
    url: str, bodies: list[bytes], requests: int, concurrency: int
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    queue = iter(range(requests))

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for number in queue:
            form = aiohttp.FormData()
            form.add_field("file", bodies[number % len(bodies)], filename="d.png", content_type="image/png")
            started = time.perf_counter()
            async with session.post(url, data=form) as response:
                await response.read()
                failures += response.status != 200
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, failures


def bench(
    target: str | None, workers: int, threads: int, args: argparse.Namespace, bodies: list[bytes]
) -> str:
    with tempfile.TemporaryDirectory(prefix="digit-bench-") as tmp:
        home = Path(tmp)
        model_config = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())
        model_config.update(minWorkers=workers, maxWorkers=workers, batchSize=args.batch_size)
        model_config["handler"]["torch_num_threads"] = threads
        (home / "model-config.yaml").write_text(yaml.safe_dump(model_config))
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "archive.py"),
                *([target] if target else []),
                "--model-store",
                str(home / "store"),
                "--model-config",
                str(home / "model-config.yaml"),
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        ports = free_ports(5)
        config = (CONFIG_DIR / "config.properties").read_text() + "\n".join(
            [
                "",
                f"inference_address=http://127.0.0.1:{ports[0]}",
                f"management_address=http://127.0.0.1:{ports[1]}",
                f"metrics_address=http://127.0.0.1:{ports[2]}",
                f"grpc_inference_port={ports[3]}",
                f"grpc_management_port={ports[4]}",
                f"model_store={home / 'store'}",
                "",
            ]
        )
        (home / "config.properties").write_text(config)
        (home / "tmp").mkdir()
        env = {**os.environ, "TMPDIR": str(home / "tmp"), "TEMP": str(home / "tmp")}
        serve = [sys.executable, str(ROOT / "scripts" / "serve.py")]
        subprocess.run(
            [*serve, "start", "--config", "config.properties", "--logs", "logs"],
            check=True,
            cwd=home,
            env=env,
        )
        try:
            url = f"http://127.0.0.1:{ports[0]}/predictions/digit"
            asyncio.run(load(url, bodies, 200, args.concurrency))
            seconds, latencies, failures = asyncio.run(load(url, bodies, args.requests, args.concurrency))
        finally:
            subprocess.run([*serve, "stop"], cwd=home, env=env, capture_output=True)
    cuts = statistics.quantiles(latencies, n=100)
    return (
        f"{workers} worker(s) x {threads} thread(s): {args.requests / seconds:7.1f} req/s, "
        f"p50 {cuts[49] * 1000:6.1f} ms, p95 {cuts[94] * 1000:6.1f} ms, failures {failures}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", nargs="?", help="run folder or .ckpt (default: newest run)")
    parser.add_argument("--configs", nargs="+", default=["1x1", "1x2", "2x1", "2x2"], help="WORKERSxTHREADS")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    bodies = payloads(args.data_dir)
    print(
        f"{os.cpu_count()} CPUs, {args.requests} requests at concurrency {args.concurrency}, "
        f"batchSize {args.batch_size}"
    )
    for setting in args.configs:
        workers, threads = (int(part) for part in setting.split("x"))
        print(bench(args.target, workers, threads, args, bodies), flush=True)


if __name__ == "__main__":
    main()
