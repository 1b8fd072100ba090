"""Benchmark TorchServe serving on this machine: latency, throughput, limits, cold start, tuning.

    python scripts/bench_serving.py [RUN_DIR | CKPT]                        # the report
    python scripts/bench_serving.py --tune [--settings workers=1,batch=1 ...]  # the tuning table

The report starts TorchServe three times, each on free loopback ports with a private
TMPDIR and the project's configs, and drives it with MNIST test images (PNG uploads,
multipart field ``file``) at each ``--concurrency`` (1, 8, 32):

* ``noop``: a handler that answers a fixed JSON without looking at the request
  (handlers/bench/noop_handler.py): what TorchServe and the load generator cost, the ceiling;
* ``preprocess``: the production handler without the network forward
  (handlers/bench/preprocess_only_handler.py);
* ``full``: the production handler (handlers/digit_handler.py).

It prints requests/s, p50/p90/p99 latency and errors, the full handler's throughput as a
fraction of the no-op one's, and the cold start (from ``python scripts/serve.py start``, what
``make serve`` runs, to the first answered prediction); writes ``--report``
(logs/bench/serving.json) and ``--plot`` (docs/serving_latency.png).

``--tune`` serves the full handler once per ``--settings`` entry (model-config keys
``workers``, ``threads``, ``batch``, ``delay``; config.properties ``netty`` =
number_of_netty_threads, ``client`` = netty_client_threads, 0 meaning TorchServe's default,
``async`` = async_logging 0/1; ``tslog=1`` = TorchServe's own log4j2.xml instead of the project's)
at ``--tune-concurrency`` (8), ``--rounds`` times each (medians reported), and writes a
markdown table (logs/bench/serving_tuning.md) and JSON (logs/bench/serving_tuning.json).

The load generator is one asyncio/aiohttp process: a closed loop of ``concurrency``
clients on keep-alive connections, each sending its next request when the previous
answer has arrived, for ``--seconds`` after ``--warmup`` seconds. Each new server first
gets ``--server-warmup`` seconds of load: under its first load the frontend's JVM compiles
its hot paths and burns extra CPU, which would otherwise be charged to the first handler
and level measured. The multipart bodies
are encoded once up front, so a request costs the client little; its CPU time is
reported next to the server's, because on a small machine both share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from eval_serving import mnist_test_pngs  # noqa: E402

CONFIG_DIR = ROOT / "configs" / "torchserve"
DEFAULT_DATA_DIR = Path(os.environ.get("DIGIT_DATA_DIR", ROOT.parent / "shared" / "data"))
DEFAULT_MAR = ROOT / "model_store" / "digit.mar"
HANDLERS = {
    "noop": ROOT / "handlers" / "bench" / "noop_handler.py",
    "preprocess": ROOT / "handlers" / "bench" / "preprocess_only_handler.py",
    "full": ROOT / "handlers" / "digit_handler.py",
}
BOUNDARY = "digitbenchboundary7MA4YWxkTrZu0gW"
MODEL_KEYS = {"workers": ("minWorkers", "maxWorkers"), "batch": ("batchSize",), "delay": ("maxBatchDelay",)}
PROPERTY_KEYS = {
    "netty": "number_of_netty_threads",
    "client": "netty_client_threads",
    "async": "async_logging",
}
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


# --- requests -------------------------------------------------------------------------------


def multipart(png: bytes, name: str) -> bytes:
    """One ``file`` upload, encoded once so the load loop only sends bytes."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def test_bodies(data_dir: Path, cache_dir: Path, count: int) -> list[bytes]:
    """``count`` MNIST test images as multipart bodies (PNGs cached as eval_serving.py does)."""
    try:
        samples = mnist_test_pngs(data_dir, cache_dir)
    except (OSError, RuntimeError) as error:
        raise SystemExit(f"Cannot read MNIST test under {data_dir} (set --data-dir): {error}") from None
    return [multipart(sample.path.read_bytes(), sample.path.name) for sample in samples[:count]]


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    client_cpu_s: float = 0.0
    frontend_cpu_s: float = 0.0
    workers_cpu_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def cut(fraction: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)

        answered = len(ordered)
        errors = sum(count for status, count in self.statuses.items() if status != 200)
        server_cpu_s = self.frontend_cpu_s + self.workers_cpu_s

        def per_request_ms(cpu_s: float) -> float | None:
            return round(cpu_s / answered * 1000, 3) if answered else None

        return {
            "concurrency": self.concurrency,
            "requests": answered + sum(self.failures.values()),
            "ok": self.statuses.get(200, 0),
            "errors": errors + sum(self.failures.values()),
            "error_kinds": {**{str(k): v for k, v in self.statuses.items() if k != 200}, **self.failures},
            "seconds": round(self.seconds, 2),
            "rps": round(answered / self.seconds, 1) if self.seconds else None,
            "p50_ms": cut(0.50),
            "p90_ms": cut(0.90),
            "p99_ms": cut(0.99),
            "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
            "client_cpu_s_per_s": round(self.client_cpu_s / self.seconds, 2),
            "server_cpu_s_per_s": round(server_cpu_s / self.seconds, 2),
            "cpu_ms_per_request": {
                "frontend": per_request_ms(self.frontend_cpu_s),
                "workers": per_request_ms(self.workers_cpu_s),
                "client": per_request_ms(self.client_cpu_s),
            },
        }


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def drive(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    warmup: float,
    timeout: float,
    server_pid: int,
) -> LoadResult:
    """A closed loop of ``concurrency`` clients; only answers after ``warmup`` are counted."""
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    result = LoadResult(concurrency, seconds)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    server = psutil.Process(server_pid)
    me = psutil.Process()
    marks: dict[str, float] = {}

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        marks["client"] = cpu_seconds([me])
        marks["frontend"] = cpu_seconds([server])
        marks["workers"] = cpu_seconds(server.children(recursive=True))

    async def client(session: aiohttp.ClientSession, offset: int) -> None:
        number = offset
        while (now := loop.time()) < stop_at:
            body = bodies[number % len(bodies)]
            number += concurrency
            counted = now >= measure_from
            sent = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except asyncio.TimeoutError:
                if counted:
                    result.failures["timeout"] += 1
                continue
            except aiohttp.ClientError as error:
                if counted:
                    result.failures[type(error).__name__] += 1
                continue
            if counted and loop.time() <= stop_at:
                result.latencies.append(time.perf_counter() - sent)
                result.statuses[status] += 1

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        marker = asyncio.create_task(mark_cpu())
        await asyncio.gather(*(client(session, offset) for offset in range(concurrency)))
        await marker
    result.client_cpu_s = cpu_seconds([me]) - marks["client"]
    result.frontend_cpu_s = cpu_seconds([server]) - marks["frontend"]
    result.workers_cpu_s = cpu_seconds(server.children(recursive=True)) - marks["workers"]
    return result


# --- a private TorchServe -------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def parse_setting(text: str) -> dict[str, int]:
    """``"workers=2,batch=8,delay=5"`` -> ``{"workers": 2, "batch": 8, "delay": 5}``."""
    setting = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in {*MODEL_KEYS, *PROPERTY_KEYS, "threads", "tslog"}:
            raise SystemExit(f"unknown setting {key!r} in {text!r}")
        setting[key] = int(value)
    return setting


def default_target() -> str | None:
    """The checkpoint model_store/digit.mar was built from, else archive.py's default."""
    try:
        with zipfile.ZipFile(DEFAULT_MAR) as archive:
            source = json.loads(archive.read("metadata.json"))["source_checkpoint"]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return source if Path(source).is_file() else None


@dataclass
class Running:
    url: str
    pid: int
    serve_s: float
    first_prediction_s: float
    model_config: dict[str, Any]
    properties: dict[str, str]


@contextlib.contextmanager
def torchserve(
    target: str | None, handler: Path, setting: dict[str, int], first_body: bytes
) -> Iterator[Running]:
    """Archive ``target`` with ``handler`` and ``setting``, serve it privately, stop it after."""
    with tempfile.TemporaryDirectory(prefix="digit-bench-") as tmp:
        home = Path(tmp)
        model_config = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())
        for key, names in MODEL_KEYS.items():
            for name in names:
                if key in setting:
                    model_config[name] = setting[key]
        if "threads" in setting:
            model_config["handler"]["torch_num_threads"] = setting["threads"]
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
                "--handler",
                str(handler),
            ],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        ports = free_ports(5)
        overrides = {
            "inference_address": f"http://127.0.0.1:{ports[0]}",
            "management_address": f"http://127.0.0.1:{ports[1]}",
            "metrics_address": f"http://127.0.0.1:{ports[2]}",
            "grpc_inference_port": str(ports[3]),
            "grpc_management_port": str(ports[4]),
            "model_store": str(home / "store"),
        }
        for key, name in PROPERTY_KEYS.items():
            if key in setting:
                overrides[name] = str(setting[key]) if key != "async" else str(bool(setting[key])).lower()
        lines = [
            line
            for line in (CONFIG_DIR / "config.properties").read_text().splitlines()
            if line.split("=", 1)[0].strip() not in overrides
        ]
        lines += [f"{key}={value}" for key, value in overrides.items()]
        (home / "config.properties").write_text("\n".join(lines) + "\n")
        properties = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
        (home / "tmp").mkdir()
        env = {**os.environ, "TMPDIR": str(home / "tmp"), "TEMP": str(home / "tmp")}
        env.pop("PYTHONPATH", None)
        serve = [sys.executable, str(ROOT / "scripts" / "serve.py")]
        url = f"{overrides['inference_address']}/predictions/digit"
        started = time.perf_counter()
        subprocess.run(
            [
                *serve,
                "start",
                "--config",
                "config.properties",
                "--logs",
                "logs",
                *(["--log-config", "torchserve"] if setting.get("tslog") else []),
            ],
            check=True,
            cwd=home,
            env=env,
            capture_output=True,
        )
        serve_s = time.perf_counter() - started
        first_prediction_s = first_answer(url, first_body, started)
        try:
            pid = int((home / "tmp" / ".model_server.pid").read_text().split()[0])
            yield Running(url, pid, serve_s, first_prediction_s, model_config, properties)
        finally:
            subprocess.run([*serve, "stop"], cwd=home, env=env, capture_output=True, timeout=120)


def first_answer(url: str, body: bytes, since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` to the first 200 answer from ``url``."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    )
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    response.read()
                    return time.perf_counter() - since
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise SystemExit(f"no answer from {url} within {timeout:.0f}s")


def load_levels(
    running: Running, bodies: list[bytes], levels: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Warm the server up at the highest level, then measure each level in turn."""
    asyncio.run(drive(running.url, bodies, max(levels), args.server_warmup, 0, args.timeout, running.pid))
    rows = []
    for concurrency in levels:
        result = asyncio.run(
            drive(running.url, bodies, concurrency, args.seconds, args.warmup, args.timeout, running.pid)
        )
        rows.append(result.summary())
    return rows


MEDIAN_KEYS = ("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_s_per_s", "client_cpu_s_per_s")


def _median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return round(statistics.median(present), 3) if present else None


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One level measured on several servers: medians of the rates, latencies and CPU, all
    requests and errors counted, and each server's requests per second kept."""
    roles = runs[0]["cpu_ms_per_request"]
    return {
        "concurrency": runs[0]["concurrency"],
        **{key: sum(run[key] for run in runs) for key in ("requests", "ok", "errors")},
        "error_kinds": dict(sum((Counter(run["error_kinds"]) for run in runs), Counter())),
        **{key: _median(run[key] for run in runs) for key in MEDIAN_KEYS},
        "cpu_ms_per_request": {
            role: _median(run["cpu_ms_per_request"][role] for run in runs) for role in roles
        },
        "rps_runs": [run["rps"] for run in runs],
    }


def cpu_split(row: dict[str, Any]) -> str:
    return " ".join(f"{role} {ms:.3f}" for role, ms in row["cpu_ms_per_request"].items() if ms is not None)


def line(label: str, row: dict[str, Any]) -> str:
    return (
        f"{label:<11} c={row['concurrency']:<3} {row['rps']:7.1f} req/s  p50 {row['p50_ms']:6.2f}  "
        f"p90 {row['p90_ms']:6.2f}  p99 {row['p99_ms']:6.2f} ms  errors {row['errors']} "
        f"{row['error_kinds'] or ''}  cpu server {row['server_cpu_s_per_s']:.2f} "
        f"client {row['client_cpu_s_per_s']:.2f} cores; cpu ms/request {cpu_split(row)}"
    )


# --- report and tuning ----------------------------------------------------------------------


def environment() -> dict[str, Any]:
    return {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_generator": "aiohttp closed loop, one process, keep-alive, multipart 'file' uploads",
    }


def served_settings(running: Running) -> dict[str, Any]:
    keys = ("default_workers_per_model", *PROPERTY_KEYS.values(), "job_queue_size")
    return {
        "model_config": running.model_config,
        "properties": {key: running.properties.get(key) for key in keys},
    }


def report(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    """Every handler on ``--rounds`` fresh servers, round-robin; medians per level.

    One server per handler is not enough on two cores: the same code and settings vary by
    up to a half from one server to the next.
    """
    result: dict[str, Any] = {
        **environment(),
        "target": args.target,
        "seconds_per_level": args.seconds,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "handlers": {},
    }
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in args.handlers}
    cold_starts: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        for name in args.handlers:
            with torchserve(args.target, HANDLERS[name], {}, bodies[0]) as running:
                rows = load_levels(running, bodies, args.concurrency, args)
                result.setdefault("settings", served_settings(running))
                if name == "full":
                    cold_starts.append((running.serve_s, running.first_prediction_s))
            runs[name].append(rows)
            for row in rows:
                print(line(name, row), flush=True)
    for name, servers in runs.items():
        result["handlers"][name] = [median_row(list(level)) for level in zip(*servers, strict=True)]
    if args.rounds > 1:
        for name, rows in result["handlers"].items():
            for row in rows:
                print(line(f"{name} (median)", row), flush=True)
    if cold_starts:
        result["cold_start"] = {
            "serve_py_ready_s": round(statistics.median(ready for ready, _ in cold_starts), 2),
            "first_prediction_s": round(statistics.median(first for _, first in cold_starts), 2),
            "first_prediction_runs_s": [round(first, 2) for _, first in cold_starts],
        }
    handlers = result["handlers"]
    if "noop" in handlers:
        result["fraction_of_noop"] = {
            name: {
                str(row["concurrency"]): round(row["rps"] / ceiling["rps"], 3)
                for row, ceiling in zip(rows, handlers["noop"], strict=True)
            }
            for name, rows in handlers.items()
            if name != "noop"
        }
        for name, fractions in result["fraction_of_noop"].items():
            print(f"{name} throughput / noop throughput by concurrency: {fractions}")
    if "cold_start" in result:
        cold = result["cold_start"]
        print(
            f"cold start: serve.py start returned after {cold['serve_py_ready_s']} s, "
            f"first prediction answered after {cold['first_prediction_s']} s"
        )
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
    colors = {"noop": "tab:gray", "preprocess": "tab:blue", "full": "tab:red"}
    for name, rows in result["handlers"].items():
        levels = [row["concurrency"] for row in rows]
        color = colors.get(name)
        for key, style in (("p50_ms", "-"), ("p90_ms", "--"), ("p99_ms", ":")):
            latency.plot(
                levels,
                [row[key] for row in rows],
                style,
                color=color,
                marker="o",
                markersize=3,
                label=f"{name} {key[:3]}",
            )
        throughput.plot(levels, [row["rps"] for row in rows], "-", color=color, marker="o", label=name)
    for axis in (latency, throughput):
        axis.set_xscale("log", base=2)
        axis.set_xticks([row["concurrency"] for row in next(iter(result["handlers"].values()))])
        axis.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_xlabel("concurrent clients")
        axis.grid(alpha=0.3)
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.get_yaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    latency.legend(fontsize=6, ncol=3)
    throughput.set_ylabel("requests/s")
    throughput.set_ylim(bottom=0)
    throughput.legend(fontsize=7)
    servers = f", medians of {result['rounds']} servers per handler" if result.get("rounds", 1) > 1 else ""
    figure.suptitle(f"TorchServe on {result['cpus']} CPUs (scripts/bench_serving.py{servers})", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def tune(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    """Serve each setting ``--rounds`` times, round-robin, each on a fresh server; report medians.

    On two cores the same setting varies by up to a third between servers (how the workers'
    batches happen to interleave with the frontend and the client), so one run per setting
    cannot rank settings that are within that spread.
    """
    runs: dict[str, list[dict[str, Any]]] = {text: [] for text in args.settings}
    for _ in range(args.rounds):
        for text in args.settings:
            setting = parse_setting(text)
            with torchserve(args.target, HANDLERS[args.tune_handler], setting, bodies[0]) as running:
                (row,) = load_levels(running, bodies, [args.tune_concurrency], args)
            runs[text].append(row)
            print(line(text, row), flush=True)
    rows = [{"setting": text, **median_row(results)} for text, results in runs.items()]
    table = [
        "| setting | req/s (median) | req/s (runs) | p50 ms | p99 ms | errors | server cores |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        table.append(
            f"| `{row['setting']}` | {row['rps']:.0f} | {' / '.join(f'{r:.0f}' for r in row['rps_runs'])} | "
            f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} | {row['server_cpu_s_per_s']:.2f} |"
        )
    return {
        **environment(),
        "concurrency": args.tune_concurrency,
        "handler": args.tune_handler,
        "rounds": args.rounds,
        "rows": rows,
        "markdown": "\n".join(table),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target",
        nargs="?",
        default=default_target(),
        help="run folder or .ckpt (default: the one model_store/digit.mar came from)",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="holds MNIST/raw")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "mnist-test-png")
    parser.add_argument("--images", type=int, default=1000, help="distinct test images cycled through")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--handlers", nargs="+", choices=list(HANDLERS), default=list(HANDLERS))
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each level")
    parser.add_argument(
        "--server-warmup",
        type=float,
        default=20,
        help="unmeasured seconds of load on each new server, while its JVM compiles the hot paths",
    )
    parser.add_argument("--timeout", type=float, default=30, help="client timeout per request, s")
    parser.add_argument("--report", type=Path, default=ROOT / "logs" / "bench" / "serving.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "serving_latency.png")
    parser.add_argument("--tune", action="store_true", help="compare --settings instead of the report")
    parser.add_argument(
        "--settings",
        nargs="+",
        default=DEFAULT_TUNING,
        help="e.g. workers=2,threads=1,batch=8,delay=5,netty=2,client=2",
    )
    parser.add_argument("--tune-concurrency", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=3, help="fresh servers per handler or tuning setting (medians reported)"
    )
    parser.add_argument("--tune-handler", choices=list(HANDLERS), default="full")
    args = parser.parse_args(argv)

    bodies = test_bodies(args.data_dir, args.cache_dir, args.images)
    print(f"{os.cpu_count()} CPUs, {len(bodies)} MNIST test PNGs, target {args.target}", flush=True)
    if args.tune:
        result = tune(args, bodies)
        path = args.report.with_name("serving_tuning.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")
        path.with_suffix(".md").write_text(result["markdown"] + "\n")
        print(result["markdown"])
        print(f"Wrote {path} and {path.with_suffix('.md')}")
        return 0
    result = report(args, bodies)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.plot)
    print(f"Wrote {args.report} and {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
