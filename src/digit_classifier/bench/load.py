"""The HTTP load generator every measurement uses: asyncio and aiohttp, keep-alive connections.

Two ways to drive an endpoint with PNG uploads (multipart field ``file``):

* :func:`closed_loop`: ``concurrency`` clients, each sending its next request when the
  previous answer has arrived, for a fixed time; latencies, statuses and the CPU time
  of the client and of the server's processes (the benchmarks);
* :func:`post_each`: every body once, at most ``concurrency`` in flight; the answers in
  order (accuracy through the endpoint).

Bodies are encoded once up front, so that a request costs the client little.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from digit_classifier.bench.samples import mnist_test_pngs

BOUNDARY = "digitbenchboundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(png: bytes, name: str = "digit.png") -> bytes:
    """One ``file`` upload as a complete multipart body."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + png + f"\r\n--{BOUNDARY}--\r\n".encode()


def mnist_uploads(data_dir: Path, cache_dir: Path, count: int) -> list[bytes]:
    """The first ``count`` MNIST test images as ``file`` uploads: the benchmarks' bodies.

    Raises ``OSError`` naming the data folder when MNIST cannot be read there.
    """
    try:
        samples = mnist_test_pngs(data_dir, cache_dir)[:count]
    except (OSError, RuntimeError) as error:
        raise OSError(f"cannot read MNIST test under {data_dir} (set --data-dir): {error}") from None
    return [multipart(sample.path.read_bytes(), sample.path.name) for sample in samples]


@dataclass
class LoadResult:
    concurrency: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds spent while measured, by role: ``client``, ``frontend``, ``workers``."""

    def percentile_ms(self, fraction: float) -> float | None:
        ordered = sorted(self.latencies)
        if not ordered:
            return None
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)

    def summary(self) -> dict[str, Any]:
        answered = len(self.latencies)
        errors = sum(count for status, count in self.statuses.items() if status != 200)
        server_cpu_s = self.cpu_s.get("frontend", 0.0) + self.cpu_s.get("workers", 0.0)
        return {
            "concurrency": self.concurrency,
            "requests": answered + sum(self.failures.values()),
            "ok": self.statuses.get(200, 0),
            "errors": errors + sum(self.failures.values()),
            "error_kinds": {**{str(k): v for k, v in self.statuses.items() if k != 200}, **self.failures},
            "seconds": round(self.seconds, 2),
            "rps": round(answered / self.seconds, 1) if self.seconds else None,
            "p50_ms": self.percentile_ms(0.50),
            "p90_ms": self.percentile_ms(0.90),
            "p99_ms": self.percentile_ms(0.99),
            "max_ms": round(max(self.latencies) * 1000, 2) if self.latencies else None,
            "client_cpu_s_per_s": round(self.cpu_s.get("client", 0.0) / self.seconds, 2),
            "server_cpu_s_per_s": round(server_cpu_s / self.seconds, 2),
            "cpu_ms_per_request": {
                role: round(seconds / answered * 1000, 3) if answered else None
                for role, seconds in self.cpu_s.items()
            },
        }


class CpuMeter:
    """CPU seconds of this process and of a server (its frontend and all its children)."""

    def __init__(self, server_pid: int | None) -> None:
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid) if server_pid else None

    def read(self) -> dict[str, float]:
        readings = {"client": _cpu_seconds([self.me])}
        if self.server is not None:
            readings["frontend"] = _cpu_seconds([self.server])
            with contextlib.suppress(psutil.Error):
                readings["workers"] = _cpu_seconds(self.server.children(recursive=True))
        return readings


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


async def closed_loop(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    seconds: float,
    warmup: float = 0.0,
    timeout: float = 30.0,
    server_pid: int | None = None,
) -> LoadResult:
    """A closed loop of ``concurrency`` clients; only answers after ``warmup`` are counted."""
    result = LoadResult(concurrency, seconds)
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup
    stop_at = measure_from + seconds
    meter = CpuMeter(server_pid)
    marks: dict[str, float] = {}

    async def mark_cpu() -> None:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        marks.update(meter.read())

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        while (now := loop.time()) < stop_at:
            body = bodies[number % len(bodies)]
            number += concurrency
            status, elapsed, failure = await _post(session, url, body)
            if now < measure_from or loop.time() > stop_at:
                continue
            if failure:
                result.failures[failure] += 1
            else:
                result.latencies.append(elapsed)
                result.statuses[status] += 1

    async with _session(concurrency, timeout) as session:
        marker = asyncio.create_task(mark_cpu())
        await asyncio.gather(*(client(session, offset) for offset in range(concurrency)))
        await marker
    result.cpu_s = {role: spent - marks.get(role, 0.0) for role, spent in meter.read().items()}
    return result


async def post_each(
    url: str, bodies: list[bytes], concurrency: int, timeout: float = 60.0, token: str | None = None
) -> list[tuple[int | None, str]]:
    """POST every body once; ``(status, response text)`` in order, ``(None, error)`` when
    no answer came."""
    semaphore = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async with _session(concurrency, timeout, headers) as session:

        async def one(body: bytes) -> tuple[int | None, str]:
            async with semaphore:
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": CONTENT_TYPE}
                    ) as response:
                        return response.status, await response.text()
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    return None, f"{type(error).__name__}: {error}"

        return await asyncio.gather(*(one(body) for body in bodies))


def _session(
    concurrency: int, timeout: float, headers: dict[str, str] | None = None
) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=timeout),
        headers=headers or {},
    )


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, float, str | None]:
    """One upload: its status, its latency in seconds, and the failure when none came back."""
    sent = time.perf_counter()
    try:
        async with session.post(url, data=body, headers={"Content-Type": CONTENT_TYPE}) as response:
            await response.read()
            return response.status, time.perf_counter() - sent, None
    except asyncio.TimeoutError:
        return 0, time.perf_counter() - sent, "timeout"
    except aiohttp.ClientError as error:
        return 0, time.perf_counter() - sent, type(error).__name__
