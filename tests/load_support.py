"""Thread clients for load tests: keep-alive sessions with timeouts, every answer kept.

A timeout or a dropped connection is a failure (``Outcome.failure``), so a hang cannot
pass; every loop is bounded in time and in requests.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import requests

TIMEOUT = (5, 20)
"""Client connect and read timeouts, s: far above any answer (a worker restart takes ~5 s)."""


@dataclass
class Outcome:
    kind: str
    sent: float
    elapsed: float
    status: int | None = None
    body: bytes = b""
    content_type: str | None = None
    failure: str | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def send(session: requests.Session, url: str, kind: str, kwargs: dict[str, Any]) -> Outcome:
    sent = time.monotonic()
    try:
        response = session.post(url, timeout=TIMEOUT, **kwargs)
    except requests.RequestException as error:
        return Outcome(kind, sent, time.monotonic() - sent, failure=type(error).__name__)
    return Outcome(
        kind,
        sent,
        time.monotonic() - sent,
        response.status_code,
        response.content,
        response.headers.get("content-type"),
    )


def run_clients(
    url: str,
    plan: Callable[[int], tuple[str, dict[str, Any]]],
    threads: int,
    seconds: float,
    max_requests: int,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """``threads`` clients send ``plan(n)`` for n = 0, 1, ... until time, count or ``stop`` runs out."""
    numbers = itertools.count()
    deadline = time.monotonic() + seconds
    stop = stop or threading.Event()

    def client() -> list[Outcome]:
        outcomes = []
        with requests.Session() as session:
            while time.monotonic() < deadline and not stop.is_set():
                number = next(numbers)
                if number >= max_requests:
                    break
                outcomes.append(send(session, url, *plan(number)))
        return outcomes

    with ThreadPoolExecutor(threads) as pool:
        return [outcome for done in pool.map(lambda _: client(), range(threads)) for outcome in done]
