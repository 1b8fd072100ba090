"""Reliability of a real TorchServe under load: sustained traffic, worker crashes, restarts, bad input.

The server is started by scripts/serve.py with the project's config.properties and
model-config.yaml (free loopback ports, a private TMPDIR) from a freshly archived random
network: speed and failure handling do not depend on accuracy. Clients are threads with
keep-alive sessions and timeouts (``load_support``); a timeout or a dropped connection is
a failure, so a hang cannot pass. Every loop is bounded in time and in requests.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import requests
from load_support import TIMEOUT, Outcome, run_clients, send
from serving_support import (
    CONFIG_DIR,
    ERRORS,
    Server,
    archive,
    make_fake_run,
    offline_predictions,
    oversize_png,
    png_header_only,
    png_variant,
    serve,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.load

GOOD_KINDS = ["L_white_on_black", "RGB_blue_on_white", "RGBA_ink_only_in_alpha", "P_palette", "1_bilevel"]
GOOD_SIZES = [(28, 28), (280, 280), (120, 300)]
MAX_WORKER_GROWTH = 40 * 2**20
"""RSS a worker may gain between the end of warm-up and the end of the load test."""


@dataclass
class Fixture:
    server: Server
    good: dict[str, bytes]
    offline: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fixture]:
    base = tmp_path_factory.mktemp("reliability")
    archive(make_fake_run(base / "run"), base / "store")
    good: dict[str, bytes] = {}
    files = []
    for kind in GOOD_KINDS:
        for width, height in GOOD_SIZES:
            name = f"{kind}_{width}x{height}"
            good[name] = png_variant(kind, (width, height))
            files.append(base / f"{name}.png")
            files[-1].write_bytes(good[name])
    offline = {
        Path(file).stem: answer
        for file, answer in offline_predictions(base / "store" / "digit.mar", files).items()
    }
    server = start_server(base / "home", CONFIG_DIR / "config.properties", base / "store")
    try:
        yield Fixture(server, good, offline)
    finally:
        stop_server(server)


# --- clients --------------------------------------------------------------------------------


def good_request(served: Fixture, number: int) -> tuple[str, dict[str, Any]]:
    names = list(served.good)
    name = names[number % len(names)]
    return name, {"files": {"file": (f"{name}.png", served.good[name], "image/png")}}


def assert_correct(served: Fixture, outcome: Outcome) -> None:
    """A 200 JSON answer equal to the offline prediction for that image."""
    assert outcome.status == 200, (outcome.kind, outcome.status, outcome.body[:200], outcome.failure)
    assert outcome.content_type == "application/json"
    body = outcome.json()
    expected = served.offline[outcome.kind]
    assert body["prediction"] == expected["prediction"], outcome.kind
    assert np.allclose(body["percentages"], expected["percentages"], atol=1e-5), outcome.kind


def workers(server: Server) -> list[dict[str, Any]]:
    (model,) = requests.get(f"{server.management}/models/digit", timeout=5).json()
    return model["workers"]


def ready_pids(server: Server) -> list[int]:
    return sorted(worker["pid"] for worker in workers(server) if worker["status"] == "READY")


def wait_for_workers(server: Server, count: int, avoid: set[int], timeout: float = 60) -> float:
    """Seconds until ``count`` workers are READY, none of them a pid in ``avoid``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pids = ready_pids(server)
        if len(pids) >= count and not avoid & set(pids):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"workers not back after {timeout}s: {workers(server)}")


def ping(server: Server) -> dict[str, Any]:
    return requests.get(f"{server.inference}/ping", timeout=5).json()


def rss(pids: list[int]) -> dict[int, int]:
    return {pid: psutil.Process(pid).memory_info().rss for pid in pids}


# --- load -----------------------------------------------------------------------------------


def test_sustained_load_has_no_errors_and_flat_worker_memory(served: Fixture) -> None:
    server = served.server
    pids = ready_pids(server)
    warm = run_clients(server.predict_url, lambda n: good_request(served, n), 8, 5, 5_000)
    assert all(outcome.status == 200 for outcome in warm)
    after_warmup = rss(pids)

    samples: list[tuple[float, dict[int, int]]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            samples.append((time.monotonic(), rss(pids)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    try:
        outcomes = run_clients(server.predict_url, lambda n: good_request(served, n), 8, 20, 40_000)
    finally:
        done.set()
        sampler.join(5)
    seconds = time.monotonic() - started
    at_end = rss(pids)

    failures = Counter(outcome.failure or outcome.status for outcome in outcomes if outcome.status != 200)
    assert not failures, failures
    for outcome in outcomes:
        assert_correct(served, outcome)
    latencies = sorted(outcome.elapsed for outcome in outcomes)
    print(
        f"\n{len(outcomes)} requests in {seconds:.1f}s ({len(outcomes) / seconds:.0f}/s), "
        f"p50 {latencies[len(latencies) // 2] * 1000:.1f} ms, "
        f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.1f} ms; worker RSS MiB after warm-up "
        f"{[round(v / 2**20) for v in after_warmup.values()]}, "
        f"at end {[round(v / 2**20) for v in at_end.values()]}"
    )
    assert len(outcomes) > 500
    assert ready_pids(server) == pids, "a worker was restarted under load"
    for pid in pids:
        growth = at_end[pid] - after_warmup[pid]
        assert growth < MAX_WORKER_GROWTH, f"worker {pid} grew {growth / 2**20:.1f} MiB under load"
        times = [moment - started for moment, _ in samples]
        values = [memory[pid] / 2**20 for _, memory in samples]
        if len(samples) >= 5:
            slope = statistics.linear_regression(times, values).slope
            assert slope < 1.0, f"worker {pid} RSS grows {slope:.2f} MiB/s: {values}"


# --- faults ---------------------------------------------------------------------------------


def assert_clear_errors(outcomes: list[Outcome], kills: list[float] = (), lost: int = 0) -> Counter:
    """Every failure is a 5xx with TorchServe's JSON body, and nothing was dropped or timed out,
    except at most ``lost`` requests sent before, or within a second after, a kill (at ``kills``):
    TorchServe can hand a batch to a worker that died before it noticed."""
    unanswered = [outcome for outcome in outcomes if outcome.failure]
    around_kill = [o for o in unanswered if any(o.sent <= kill + 1.0 < o.sent + o.elapsed for kill in kills)]
    assert len(unanswered) == len(around_kill) <= lost, [
        (o.failure, [round(o.sent - kill, 2) for kill in kills]) for o in unanswered
    ]
    errors = Counter(f"no answer ({o.failure})" for o in unanswered)
    for outcome in outcomes:
        if outcome.failure:
            continue
        if outcome.status != 200:
            assert 500 <= outcome.status < 600, (outcome.status, outcome.body[:200])
            body = outcome.json()
            assert body["code"] == outcome.status and body["message"], body
            errors[f"{outcome.status} {body['message']}"] += 1
    return errors


def _kill_one_worker_then_all(server: Server, before: list[int], stop: threading.Event) -> dict[str, float]:
    """SIGKILL one worker, wait for its replacement, then kill every worker and wait again;
    set ``stop`` two seconds later. Returns when each happened (``time.monotonic()``) and how
    long each recovery took."""
    events: dict[str, float] = {}
    time.sleep(2)
    events["kill_one"] = time.monotonic()
    os.kill(before[0], signal.SIGKILL)
    events["one_back_s"] = wait_for_workers(server, len(before), {before[0]})
    events["one_back"] = time.monotonic()
    time.sleep(1)
    survivors = ready_pids(server)
    events["kill_all"] = time.monotonic()
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    events["all_back_s"] = wait_for_workers(server, len(before), set(survivors))
    events["all_back"] = time.monotonic()
    time.sleep(2)
    stop.set()
    return events


def test_killed_workers_are_restarted_and_clients_get_clear_errors(served: Fixture) -> None:
    server = served.server
    before = ready_pids(server)
    assert len(before) >= 1
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        injected = pool.submit(_kill_one_worker_then_all, server, before, stop)
        try:
            outcomes = run_clients(
                server.predict_url, lambda n: good_request(served, n), 4, 150, 60_000, stop
            )
        finally:
            stop.set()
        events = injected.result(timeout=150)

    # TorchServe 0.12 sometimes never answers requests it sent to a worker that was SIGKILLed
    # (in flight, or sent in the ~50 ms before the frontend noticed the death): 0 to 4 per run.
    # Tolerated here (at most one batch per kill, sent up to 1 s after it); all later ones must
    # be answered.
    errors = assert_clear_errors(outcomes, [events["kill_one"], events["kill_all"]], lost=2 * 4)
    for outcome in outcomes:
        if outcome.status == 200:
            assert_correct(served, outcome)
    # Sent once the workers were back (and, for the first kill, answered before the second).
    after_one = [
        o for o in outcomes if events["one_back"] <= o.sent and o.sent + o.elapsed < events["kill_all"]
    ]
    after_all = [o for o in outcomes if o.sent >= events["all_back"]]
    assert after_one and all(o.status == 200 for o in after_one)
    assert after_all and all(o.status == 200 for o in after_all)
    slowest = max(outcome.elapsed for outcome in outcomes)
    first_ok = min(o.sent + o.elapsed for o in outcomes if o.sent >= events["kill_all"] and o.status == 200)
    print(
        f"\n{len(outcomes)} requests; errors {dict(errors)}; one worker back in {events['one_back_s']:.1f}s, "
        f"all back in {events['all_back_s']:.1f}s, first answer after killing all "
        f"{first_ok - events['kill_all']:.1f}s; slowest answer {slowest:.1f}s"
    )
    assert first_ok - events["kill_all"] < 30
    assert sum(errors.values()) <= 4 * 2 * 8, "more failures than requests in flight when killed"
    assert ping(server) == {"status": "Healthy"}


def test_stop_and_start_brings_the_model_back(served: Fixture) -> None:
    server = served.server
    before = ready_pids(server)
    stopped = serve("stop", server.home)
    assert stopped.returncode == 0, stopped.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.inference}/ping", timeout=5)
    started = time.monotonic()
    restarted = serve(
        "start", server.home, "--config", "config.properties", "--logs", "logs", "--timeout", "120"
    )
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    print(f"\nrestart took {time.monotonic() - started:.1f}s")
    assert ping(server) == {"status": "Healthy"}
    assert set(ready_pids(server)).isdisjoint(before)
    with requests.Session() as session:
        for number in range(len(served.good)):
            assert_correct(served, send(session, server.predict_url, *good_request(served, number)))


# --- bad input ------------------------------------------------------------------------------


def multipart_files(count: int, field: str, payload: Callable[[int], bytes]) -> list[tuple[str, tuple]]:
    return [(field if field else f"extra{i}", (f"d{i}.png", payload(i), "image/png")) for i in range(count)]


RANDOM = np.random.default_rng(1)
BAD: dict[str, tuple[dict[str, Any], int, str]] = {
    **{name: (kwargs, status, "handler") for name, (kwargs, status, _) in ERRORS.items()},
    "random bytes": (
        dict(data=RANDOM.bytes(4096), headers={"Content-Type": "application/octet-stream"}),
        415,
        "handler",
    ),
    "random bytes as file": (
        dict(files={"file": ("r.png", RANDOM.bytes(4096), "image/png")}),
        415,
        "handler",
    ),
    "png signature then noise": (dict(data=oversize_png(50_000)), 400, "handler"),
    "huge dimensions header": (dict(data=png_header_only(100_000, 100_000)), 413, "handler"),
    "64 files, none named file": (
        dict(files=multipart_files(64, "", lambda i: png_variant("L_white_on_black"))),
        400,
        "handler",
    ),
    "64 garbage files named file": (
        dict(files=multipart_files(64, "file", lambda i: RANDOM.bytes(200))),
        415,
        "handler",
    ),
    "over max_request_size": (dict(data=oversize_png(7 * 2**20)), 413, "frontend, empty body"),
    "16 KiB header": (dict(data=b"x", headers={"X-Padding": "a" * 16 * 1024}), 400, "frontend"),
    "64 KiB header": (dict(data=b"x", headers={"X-Padding": "a" * 64 * 1024}), 400, "frontend"),
    "300 headers": (dict(data=b"x", headers={f"X-H{i}": "v" * 100 for i in range(300)}), 400, "frontend"),
    "16 KiB query string": (dict(data=b"x", params={"q": "a" * 16 * 1024}), 400, "frontend"),
}
"""Bad requests: requests kwargs, expected status, who answers (the handler answers JSON
``{"error", "status"}``; TorchServe's frontend JSON ``{"code", "type", "message"}`` or nothing)."""

FRONTEND_5XX = {
    "binary body as form-urlencoded": dict(
        data=png_variant("L_white_on_black"), headers={"Content-Type": "application/x-www-form-urlencoded"}
    ),
}
"""Bad requests TorchServe's frontend answers with a 5xx before the handler runs (a
TorchServe limitation: its form decoder's ``ErrorDataDecoderException`` becomes a 500)."""


def test_bad_input_mixed_into_load_gets_4xx_and_never_hurts_the_server(served: Fixture) -> None:
    server = served.server
    server_pid = int((server.home / "tmp" / ".model_server.pid").read_text().split()[0])
    pids = ready_pids(server)
    bad_names = list(BAD) + list(FRONTEND_5XX)
    rounds = 6

    def plan(number: int) -> tuple[str, dict[str, Any]]:
        if number % 2:
            return good_request(served, number // 2)
        name = bad_names[(number // 2) % len(bad_names)]
        return name, (BAD[name][0] if name in BAD else FRONTEND_5XX[name])

    outcomes = run_clients(server.predict_url, plan, 8, 90, 2 * rounds * len(bad_names))
    assert len(outcomes) == 2 * rounds * len(bad_names)

    dropped = Counter(outcome.failure for outcome in outcomes if outcome.failure)
    assert not dropped, f"requests without an HTTP answer: {dropped}"
    seen: dict[str, Counter] = {}
    for outcome in outcomes:
        if outcome.kind in served.good:
            assert_correct(served, outcome)
            continue
        seen.setdefault(outcome.kind, Counter())[outcome.status] += 1
        if outcome.kind in FRONTEND_5XX:
            assert outcome.status == 500 and outcome.json()["code"] == 500, outcome.body[:200]
            continue
        _, status, who = BAD[outcome.kind]
        assert outcome.status == status, (outcome.kind, outcome.status, outcome.body[:200])
        if who == "handler":
            assert outcome.content_type == "application/json"
            assert outcome.json() == {"error": outcome.json()["error"], "status": status}
        elif who == "frontend":
            assert outcome.json()["code"] == status
    print(
        "\n"
        + "\n".join(
            f"{name}: {dict(statuses)} ({BAD.get(name, (0, 0, 'frontend 5xx'))[2]})"
            for name, statuses in seen.items()
        )
    )
    assert ping(server) == {"status": "Healthy"}
    assert ready_pids(server) == pids, "a worker was restarted"
    assert int((server.home / "tmp" / ".model_server.pid").read_text().split()[0]) == server_pid


def test_many_image_files_named_file_are_answered_from_the_last_one(served: Fixture) -> None:
    """TorchServe hands the handler one value per field name (the last part's), so a request
    with many ``file`` parts cannot be refused: it is classified from its last part."""
    names = list(served.good)
    parts = [("file", (f"{name}.png", served.good[name], "image/png")) for name in names]
    response = requests.post(served.server.predict_url, files=parts, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["prediction"] == served.offline[names[-1]]["prediction"]
