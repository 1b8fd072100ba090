"""The serving benchmark: handlers served by fresh private TorchServes under a closed-loop load.

``scripts/bench_serving.py`` is the command line (its docstring says what is measured).
Each served handler is archived from the same checkpoint with the project's model config
(plus a setting's changes), started by :func:`digit_classifier.serving.torchserve.private_torchserve`
on free loopback ports, warmed up, and driven by :func:`digit_classifier.bench.load.closed_loop`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from digit_classifier.bench.load import CONTENT_TYPE, closed_loop
from digit_classifier.serving.archive import DEFAULT_MODEL_CONFIG, HANDLER, build_archive
from digit_classifier.serving.torchserve import TorchServe, private_torchserve

BENCH_HANDLERS = HANDLER.parent / "bench"
HANDLERS = {
    "noop": BENCH_HANDLERS / "noop_handler.py",
    "stock": BENCH_HANDLERS / "stock_handler.py",
    "preprocess": BENCH_HANDLERS / "preprocess_only_handler.py",
    "full": HANDLER,
}
MODEL_KEYS = {"workers": ("minWorkers", "maxWorkers"), "batch": ("batchSize",), "delay": ("maxBatchDelay",)}
PROPERTY_KEYS = {
    "netty": "number_of_netty_threads",
    "client": "netty_client_threads",
    "async": "async_logging",
}
HANDLER_KEYS = {"threads": "torch_num_threads", "buffered": "buffered_frontend_reads"}
SETTING_KEYS = {*MODEL_KEYS, *PROPERTY_KEYS, *HANDLER_KEYS, "tslog"}
MEDIAN_KEYS = ("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_s_per_s", "client_cpu_s_per_s")


def parse_setting(text: str) -> dict[str, int]:
    """``"workers=2,batch=8,delay=5"`` -> ``{"workers": 2, "batch": 8, "delay": 5}``."""
    setting = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in SETTING_KEYS:
            raise SystemExit(f"unknown setting {key!r} in {text!r}; known: {sorted(SETTING_KEYS)}")
        setting[key] = int(value)
    return setting


def model_config(setting: dict[str, int]) -> dict[str, Any]:
    """The project's model config with a setting's worker, batching and thread changes."""
    config = yaml.safe_load(DEFAULT_MODEL_CONFIG.read_text())
    for key, names in MODEL_KEYS.items():
        for name in names:
            if key in setting:
                config[name] = setting[key]
    for key, name in HANDLER_KEYS.items():
        if key in setting:
            config["handler"][name] = setting[key]
    return config


def property_overrides(setting: dict[str, int]) -> dict[str, str]:
    overrides = {name: str(setting[key]) for key, name in PROPERTY_KEYS.items() if key in setting}
    if "async" in setting:
        overrides["async_logging"] = str(bool(setting["async"])).lower()
    return overrides


@dataclass
class Running:
    server: TorchServe
    url: str
    pid: int
    serve_s: float
    first_prediction_s: float
    model_config: dict[str, Any]


@contextlib.contextmanager
def served(
    target: Path, handler: Path, setting: dict[str, int], first_body: bytes, mar: Path | None = None
) -> Iterator[Running]:
    """Archive ``target`` with ``handler`` and ``setting`` (or take a built ``mar`` as it is),
    serve it privately, stop it after."""
    with tempfile.TemporaryDirectory(prefix="digit-bench-") as tmp:
        home = Path(tmp)
        config = model_config(setting)
        if mar is None:
            (home / "model-config.yaml").write_text(yaml.safe_dump(config))
            build_archive(target, home / "store", model_config=home / "model-config.yaml", handler=handler)
        else:
            (home / "store").mkdir()
            shutil.copy2(mar, home / "store" / "digit.mar")
        kwargs = {"log_config": None} if setting.get("tslog") else {}
        started = time.perf_counter()
        with private_torchserve(
            home, home / "store", overrides=property_overrides(setting), **kwargs
        ) as server:
            serve_s = time.perf_counter() - started
            url = server.predict_url()
            first = first_answer(url, first_body, started)
            yield Running(server, url, server.pid() or 0, serve_s, first, config)


def first_answer(url: str, body: bytes, since: float, timeout: float = 60) -> float:
    """Seconds from ``since`` to the first 200 answer from ``url``."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": CONTENT_TYPE})
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(request, timeout=10) as response,
        ):
            if response.status == 200:
                response.read()
                return time.perf_counter() - since
        time.sleep(0.05)
    raise SystemExit(f"no answer from {url} within {timeout:.0f}s")


def load_levels(
    running: Running, bodies: list[bytes], levels: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Warm the server up at the highest level, then measure each level in turn."""
    asyncio.run(closed_loop(running.url, bodies, max(levels), args.server_warmup, timeout=args.timeout))
    rows = []
    for concurrency in levels:
        result = asyncio.run(
            closed_loop(
                running.url, bodies, concurrency, args.seconds, args.warmup, args.timeout, running.pid
            )
        )
        rows.append(result.summary())
    return rows


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
            role: _median(run["cpu_ms_per_request"].get(role) for run in runs) for role in roles
        },
        "rps_runs": [run["rps"] for run in runs],
    }


def line(label: str, row: dict[str, Any]) -> str:
    split = " ".join(f"{role} {ms:.3f}" for role, ms in row["cpu_ms_per_request"].items() if ms is not None)
    return (
        f"{label:<11} c={row['concurrency']:<3} {row['rps']:7.1f} req/s  p50 {row['p50_ms']:6.2f}  "
        f"p90 {row['p90_ms']:6.2f}  p99 {row['p99_ms']:6.2f} ms  errors {row['errors']} "
        f"{row['error_kinds'] or ''}  cpu server {row['server_cpu_s_per_s']:.2f} "
        f"client {row['client_cpu_s_per_s']:.2f} cores; cpu ms/request {split}"
    )


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
    properties = running.server.properties
    return {"model_config": running.model_config, "properties": {key: properties.get(key) for key in keys}}


def report(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    """Every handler on ``--rounds`` fresh servers, round-robin; medians per level.

    One server per handler is not enough on two cores: the same code and settings vary by
    up to a half from one server to the next.
    """
    result: dict[str, Any] = {
        **environment(),
        "target": str(args.target),
        "seconds_per_level": args.seconds,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "handlers": {},
    }
    runs: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in args.handlers}
    cold_starts: list[tuple[float, float]] = []
    for _ in range(args.rounds):
        for name in args.handlers:
            with served(args.target, HANDLERS[name], {}, bodies[0]) as running:
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
    result.update(_ratios(result["handlers"]), **_cold_start(cold_starts))
    return result


def _ratios(handlers: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    if "noop" not in handlers:
        return {}
    fractions = {
        name: {
            str(row["concurrency"]): round(row["rps"] / ceiling["rps"], 3)
            for row, ceiling in zip(rows, handlers["noop"], strict=True)
        }
        for name, rows in handlers.items()
        if name != "noop"
    }
    for name, by_level in fractions.items():
        print(f"{name} throughput / noop throughput by concurrency: {by_level}")
    return {"fraction_of_noop": fractions}


def _cold_start(cold_starts: list[tuple[float, float]]) -> dict[str, Any]:
    if not cold_starts:
        return {}
    cold = {
        "serve_ready_s": round(statistics.median(ready for ready, _ in cold_starts), 2),
        "first_prediction_s": round(statistics.median(first for _, first in cold_starts), 2),
        "first_prediction_runs_s": [round(first, 2) for _, first in cold_starts],
    }
    print(
        f"cold start: the server was ready after {cold['serve_ready_s']} s, "
        f"first prediction answered after {cold['first_prediction_s']} s"
    )
    return {"cold_start": cold}


def tune(args: argparse.Namespace, bodies: list[bytes]) -> dict[str, Any]:
    """Serve each setting ``--rounds`` times, round-robin, each on a fresh server; report medians.

    On two cores the same setting varies by up to a third between servers (how the workers'
    batches happen to interleave with the frontend and the client), so one run per setting
    cannot rank settings that are within that spread.
    """
    runs: dict[str, list[dict[str, Any]]] = {text: [] for text in args.settings}
    for _ in range(args.rounds):
        for text in args.settings:
            with served(args.target, HANDLERS[args.tune_handler], parse_setting(text), bodies[0]) as running:
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


def plot(result: dict[str, Any], path: Path) -> None:
    """Latency percentiles and throughput against concurrency, one colour per handler."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    figure = Figure(figsize=(9, 3.4), dpi=80)
    latency, throughput = figure.subplots(1, 2)
    colors = {"noop": "tab:gray", "stock": "tab:green", "preprocess": "tab:blue", "full": "tab:red"}
    for name, rows in result["handlers"].items():
        levels = [row["concurrency"] for row in rows]
        for key, style in (("p50_ms", "-"), ("p90_ms", "--"), ("p99_ms", ":")):
            values = [row[key] for row in rows]
            latency.plot(
                levels,
                values,
                style,
                color=colors.get(name),
                marker="o",
                markersize=3,
                label=f"{name} {key[:3]}",
            )
        throughput.plot(
            levels, [row["rps"] for row in rows], "-", color=colors.get(name), marker="o", label=name
        )
    for axis in (latency, throughput):
        axis.set_xscale("log", base=2)
        axis.set_xticks([row["concurrency"] for row in next(iter(result["handlers"].values()))])
        axis.get_xaxis().set_major_formatter(ScalarFormatter())
        axis.set_xlabel("concurrent clients")
        axis.grid(alpha=0.3)
    latency.set_ylabel("latency (ms)")
    latency.set_yscale("log")
    latency.get_yaxis().set_major_formatter(ScalarFormatter())
    latency.legend(fontsize=6, ncol=3)
    throughput.set_ylabel("requests/s")
    throughput.set_ylim(bottom=0)
    throughput.legend(fontsize=7)
    servers = f", medians of {result['rounds']} servers per handler" if result.get("rounds", 1) > 1 else ""
    figure.suptitle(f"TorchServe on {result['cpus']} CPUs (scripts/bench_serving.py{servers})", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
