"""Where a live TorchServe worker's time goes under load: py-spy samples, grouped by stage.

``scripts/profile_worker.py`` is the command line. It serves the full handler on a private
TorchServe, drives it with the benchmark's closed-loop load, and meanwhile attaches py-spy
(which samples a running process from outside, without changing it) to every worker for
the same seconds. Each sampled stack is charged to the first stage that its frames match,
looked for from the innermost frame out, so that, say, Pillow's decoding inside
``prepare_batch`` counts as decoding, not as preprocessing.

py-spy samples what each busy thread is doing, whether or not it holds a core at that
instant. On two cores shared with the frontend's JVM and the load generator, a worker that
has just handed its answer to the frontend (``sendall``) is often preempted by the thread
that reads it, so "send the answer" includes that wait. A worker waiting for its next
batch is blocked in a ``recv``, which py-spy does not always see as idle: those samples
get a stage of their own.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil

from digit_classifier.bench.load import closed_loop

STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("decode PNG", ("PIL/PngImagePlugin", "PIL/ImageFile", "pyspng/", "read_png", "_decode_", "_eight_bit")),
    ("preprocess (ink, crop, resize, centre)", ("preprocessing.py",)),
    ("forward pass", ("torch/nn/", "predict_probabilities", "torch/_ops")),
    ("build batch and answers", ("inference.py", "digit_handler.py")),
    ("TorchServe metrics", ("ts/metrics/", "handler_utils/timer")),
    ("logging", ("logging/",)),
    ("TorchServe protocol (read request, encode answer)", ("ts/protocol/", "otf_message_handler")),
    ("send the answer to the frontend", ("model_service_worker.py:187",)),
    ("TorchServe worker loop", ("ts/service.py", "model_service_worker", "ts/context.py")),
]
OTHER = "other"
WAIT = "wait for the next batch (its first read)"
READS = ("_retrieve_buffer", "FrontendReader.__call__")
"""The functions a worker reads the frontend's socket with: TorchServe's, or the handler's
buffered one (``digit_classifier.runtime.protocol``)."""


def waits_for_a_batch(stack: list[str]) -> bool:
    """Whether ``stack`` is in the read of a message's first byte, called by ``retrieve_msg``
    itself: there the worker blocks until the frontend sends the next batch."""
    names = [frame.split(" (")[0] for frame in stack]
    return any(outer == "retrieve_msg" and inner in READS for outer, inner in pairwise(names))


def stage_of(stack: list[str]) -> str:
    """The stage of one sampled stack, innermost frame first."""
    if waits_for_a_batch(stack):
        return WAIT
    for frame in reversed(stack):
        for stage, markers in STAGES:
            if any(marker in frame for marker in markers):
                return stage
    return OTHER


def parse_raw(path: Path) -> Counter:
    """Samples per stage from py-spy's ``--format raw`` output (``frame;frame;... count``)."""
    stages: Counter = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stages[stage_of(stack.split(";"))] += int(count)
    return stages


def py_spy() -> str:
    """The py-spy executable: the environment's own (``pip install py-spy``), else the PATH's."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy") or "py-spy"


def record(pid: int, seconds: float, rate: int, out: Path) -> subprocess.Popen:
    """Start py-spy on ``pid`` (in the background) for ``seconds``."""
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds))]
    command += ["--rate", str(rate), "--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def profile_workers(
    url: str, server_pid: int, bodies: list[bytes], concurrency: int, seconds: float, rate: int, raw_dir: Path
) -> dict[str, Any]:
    """Load ``url`` for ``seconds`` while py-spy samples every worker; samples and ms per request
    by stage. py-spy's raw stacks stay in ``raw_dir``, one file per worker (flame-graph input)."""
    workers = [child.pid for child in psutil.Process(server_pid).children(recursive=True)]
    raw_dir.mkdir(parents=True, exist_ok=True)
    outputs = [raw_dir / f"worker-{number}.txt" for number in range(len(workers))]
    spies = [record(pid, seconds, rate, out) for pid, out in zip(workers, outputs, strict=True)]
    load = asyncio.run(closed_loop(url, bodies, concurrency, seconds + 1, timeout=30, server_pid=server_pid))
    for spy in spies:
        spy.wait(timeout=seconds + 60)
    stages: Counter = sum((parse_raw(out) for out in outputs if out.is_file()), Counter())
    answered = len(load.latencies)
    total = sum(stages.values())
    return {
        "workers": workers,
        "requests": answered,
        "rps": round(answered / load.seconds, 1),
        "samples": total,
        "rate_hz": rate,
        "stages": {
            stage: {
                "share": round(count / total, 4),
                "ms_per_request": round(count / rate / answered * 1000, 4) if answered else None,
            }
            for stage, count in stages.most_common()
        },
    }


def markdown(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """A table of CPU ms per request by stage, with an earlier profile beside it if given."""
    runs = [("before", before), ("after", after)] if before else [("now", after)]
    stages = list(dict.fromkeys(stage for _, run in runs for stage in run["stages"]))
    header = " | ".join(f"{name} ms/request | {name} share" for name, _ in runs)
    lines = [f"| stage | {header} |", "| --- |" + " ---: | ---: |" * len(runs)]
    for stage in stages:
        cells = []
        for _, run in runs:
            entry = run["stages"].get(stage, {"share": 0.0, "ms_per_request": 0.0})
            cells.append(f"{entry['ms_per_request']:.3f} | {entry['share']:.1%}")
        lines.append(f"| {stage} | {' | '.join(cells)} |")
    load = " | ".join(f"{run['rps']:.0f} req/s | {run['samples']} samples" for _, run in runs)
    lines.append(f"| (throughput while sampled) | {load} |")
    return "\n".join(lines) + "\n"
