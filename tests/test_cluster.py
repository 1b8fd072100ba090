"""TorchServe replicas behind a real nginx: rollout and rollback under load, a replica crash,
Prometheus scraping the replicas, a page of another origin in Chromium, nginx's own refusals.

One cluster serves the module: two replicas of one worker each (free loopback ports, their own
TMPDIRs), started by ``digit_classifier.serving.cluster`` as ``make serve-cluster`` starts
its own, serving ``digit.mar`` (version 1). ``digit-2.mar`` (version 2) is another random
network that answers differently, for the rollout. Every test leaves version 1 serving on
both replicas, both up.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import yaml
from load_support import Outcome, run_clients
from serving_support import CONFIG_DIR, ERRORS, ROOT, make_fake_run, png_variant
from webapp_support import Caller, caller_page

from digit_classifier.serving.archive import build_archive
from digit_classifier.serving.cluster import Cluster, private_cluster
from digit_classifier.serving.deploy import Archive, DeployError, History
from digit_classifier.serving.monitoring import PROMETHEUS, Prometheus, render_config
from digit_classifier.serving.nginx import NGINX, Nginx, Settings
from digit_classifier.serving.predict import classify, load_model
from digit_classifier.serving.templates import fill
from digit_classifier.serving.torchserve import TorchServe, free_ports
from digit_classifier.web.browser import CHROMIUM
from digit_classifier.web.server import DEFAULT_MAX_BODY_BYTES

KINDS = ["L_white_on_black", "RGB_blue_on_white", "RGBA_ink_only_in_alpha", "P_palette"]
SIZES = [(28, 28), (280, 280)]
T = TypeVar("T")
needs_nginx = pytest.mark.skipif(
    not NGINX.is_file(), reason=f"needs nginx at {NGINX} (apt-get install nginx)"
)


# --- the parts alone ---------------------------------------------------------------------------


def fake_archive(path: Path, version: str) -> Path:
    """A file with just the manifest of a model archive: enough for ``Archive.read``."""
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr(
            "MAR-INF/MANIFEST.json", f'{{"model": {{"modelName": "digit", "modelVersion": "{version}"}}}}'
        )
    return path


def test_history_rolls_back_to_what_was_live_before(tmp_path: Path) -> None:
    history = History(tmp_path / "deployments.json")
    first, second = fake_archive(tmp_path / "digit.mar", "1"), fake_archive(tmp_path / "digit-2.mar", "2")
    with pytest.raises(DeployError, match="nothing to roll back to"):
        history.previous(tmp_path)
    history.record({"modelVersion": "1", "modelUrl": "digit.mar"}, Archive.read(second))
    assert history.previous(tmp_path) == Archive.read(first)
    history.rolled_back()
    assert history.entries() == [{"version": "1", "file": "digit.mar"}]
    history.record({"modelVersion": "1", "modelUrl": "digit.mar"}, Archive.read(second))
    fake_archive(first, "3")
    with pytest.raises(DeployError, match="now holds version 3, not 1"):
        history.previous(tmp_path)


def test_templates_must_be_filled_completely(tmp_path: Path) -> None:
    (tmp_path / "t.conf").write_text("listen {{listen}}; root {{root}}; set $x {y};")
    assert fill(tmp_path / "t.conf", {"listen": "a", "root": "b"}) == "listen a; root b; set $x {y};"
    with pytest.raises(KeyError, match="root"):
        fill(tmp_path / "t.conf", {"listen": "a"})


@needs_nginx
def test_nginx_answers_json_when_every_replica_is_down_and_admits_listed_origins(tmp_path: Path) -> None:
    listed = "http://127.0.0.1:5001"
    dead = tuple(f"127.0.0.1:{port}" for port in free_ports(2))
    nginx = Nginx(tmp_path / "nginx")
    nginx.write_config(Settings(f"127.0.0.1:{free_ports(1)[0]}", dead, cors_origins=(listed,)))
    nginx.start()
    try:
        down = requests.post(f"{nginx.url}/api/digit", data=b"x", headers={"Origin": listed}, timeout=10)
        other = requests.options(
            f"{nginx.url}/api/digit", headers={"Origin": "http://elsewhere.example"}, timeout=10
        )
    finally:
        assert nginx.stop()
    assert down.status_code == 502 and down.headers["Content-Type"] == "application/json"
    assert down.json() == {"error": "No model server answered: every replica failed.", "status": 502}
    assert down.headers["Access-Control-Allow-Origin"] == listed and down.headers["Vary"] == "Origin"
    assert other.status_code == 204 and "Access-Control-Allow-Origin" not in other.headers


# --- a cluster ---------------------------------------------------------------------------------


@dataclass
class Models:
    store: Path
    old: Path
    new: Path
    images: dict[str, bytes]
    answers: dict[str, dict[str, dict[str, Any]]]
    """Offline answers by version ("1", "2") and image name."""

    def plan(self, number: int) -> tuple[str, dict[str, Any]]:
        name = list(self.images)[number % len(self.images)]
        return name, {"files": {"file": (f"{name}.png", self.images[name], "image/png")}}

    def version_of(self, outcome: Outcome) -> str | None:
        """Which model's offline answer ``outcome`` is, if either's."""
        body = outcome.json()
        for version, answers in self.answers.items():
            expected = answers[outcome.kind]
            close = np.allclose(body["percentages"], expected["percentages"], atol=1e-5)
            if body["prediction"] == expected["prediction"] and close:
                return version
        return None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    """digit.mar and digit-2.mar, versions 1 and 2 by the archive counter, one worker each; built
    and read in this process (``test_export`` runs ``scripts/archive.py``)."""
    base = tmp_path_factory.mktemp("cluster_models")
    model_config = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())
    model_config.update(minWorkers=1, maxWorkers=1)
    (base / "model-config.yaml").write_text(yaml.safe_dump(model_config))
    store = base / "store"

    def build(seed: int, file_name: str) -> Path:
        checkpoint = make_fake_run(base / f"run{seed}", seed=seed) / "checkpoints" / "best.ckpt"
        return build_archive(checkpoint, store, model_config=base / "model-config.yaml", file_name=file_name)

    old = build(0, "digit.mar")
    new = build(1, "digit-2.mar")
    images = {f"{kind}_{w}x{h}": png_variant(kind, (w, h)) for kind in KINDS for w, h in SIZES}
    answers = {}
    for mar in (old, new):
        model, limits = load_model(mar)
        answers[Archive.read(mar).version] = dict(
            zip(images, classify(model, list(images.values()), limits), strict=True)
        )
    assert set(answers) == {"1", "2"}
    differ = [
        name for name in images if answers["1"][name]["percentages"] != answers["2"][name]["percentages"]
    ]
    assert differ == list(images), "the two models must answer differently"
    return Models(store, old, new, images, answers)


@pytest.fixture(scope="module")
def cluster(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not NGINX.is_file():
        pytest.skip(f"needs nginx at {NGINX} (apt-get install nginx)")
    with private_cluster(tmp_path_factory.mktemp("cluster") / "cluster", models.store, 2) as running:
        yield running


def loaded_versions(server: TorchServe) -> list[str]:
    """What ``GET /models/digit/all`` lists on a replica."""
    described = requests.get(f"{server.management_url}/models/digit/all", timeout=10).json()
    return sorted(entry["modelVersion"] for entry in described)


def deploy(cluster: Cluster, *args: str) -> subprocess.CompletedProcess:
    """``python scripts/deploy.py`` against ``cluster``, as a user runs it."""
    command = [sys.executable, str(ROOT / "scripts" / "deploy.py"), "--cluster", str(cluster.root), *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)


def assert_no_failures(outcomes: list[Outcome]) -> None:
    failures = Counter(outcome.failure or outcome.status for outcome in outcomes if outcome.status != 200)
    assert not failures, (failures, [o.body[:200] for o in outcomes if o.status not in (200, None)][:5])


@pytest.mark.slow
def test_replicas_and_nginx_serve_the_page_and_the_api(cluster: Cluster, models: Models) -> None:
    assert [loaded_versions(server) for server in cluster.replicas] == [["1"], ["1"]]
    page = requests.get(f"{cluster.url}/", timeout=10)
    assert page.status_code == 200 and b'<canvas id="pad"' in page.content
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert (
        requests.get(f"{cluster.url}/app.js", timeout=10)
        .headers["Content-Type"]
        .startswith("text/javascript")
    )
    for path in ("/api/digit", "/predictions/digit"):
        name, kwargs = models.plan(0)
        answer = requests.post(f"{cluster.url}{path}", timeout=30, **kwargs)
        assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
        assert models.version_of(Outcome(name, 0, 0, 200, answer.content)) == "1"


@pytest.mark.slow
@pytest.mark.parametrize("case", ERRORS)
def test_bad_input_through_nginx_gets_the_handlers_error(cluster: Cluster, case: str) -> None:
    kwargs, status, message = ERRORS[case]
    response = requests.post(f"{cluster.url}/api/digit", timeout=30, **kwargs)
    assert response.status_code == status and response.headers["Content-Type"] == "application/json"
    assert set(response.json()) == {"error", "status"} and response.json()["status"] == status
    if message:
        assert response.json()["error"] == message


@pytest.mark.slow
def test_nginx_refusals_are_json(cluster: Cluster) -> None:
    big = b"\x89PNG" + bytes(DEFAULT_MAX_BODY_BYTES + 10)
    too_large = requests.post(f"{cluster.url}/api/digit", data=big, timeout=30)
    assert too_large.status_code == 413 and too_large.headers["Content-Type"] == "application/json"
    limit = f"limit {DEFAULT_MAX_BODY_BYTES} bytes"
    assert too_large.json() == {"error": f"Upload too large: {len(big)} bytes, {limit}.", "status": 413}
    not_allowed = requests.get(f"{cluster.url}/predictions/digit", timeout=10)
    assert not_allowed.status_code == 405 and not_allowed.headers["Allow"] == "OPTIONS, POST"
    assert not_allowed.json()["status"] == 405
    preflight = requests.options(
        f"{cluster.url}/api/digit", headers={"Origin": "http://x.example"}, timeout=10
    )
    assert (
        preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    )


@pytest.mark.slow
def test_deploy_refuses_what_it_cannot_roll_out(cluster: Cluster, tmp_path: Path) -> None:
    outside = fake_archive(tmp_path / "digit.mar", "7")
    refused = deploy(cluster, str(outside))
    assert refused.returncode == 2 and "is not in the model store" in refused.stderr
    nothing = deploy(cluster, "--rollback")
    assert nothing.returncode == 2 and "nothing to roll back to" in nothing.stderr
    assert [loaded_versions(server) for server in cluster.replicas] == [["1"], ["1"]]


def under_load(cluster: Cluster, models: Models, action: Callable[[], T]) -> tuple[list[Outcome], T]:
    """Run ``action`` while 8 clients send steady load through nginx; their outcomes and its result."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(run_clients, f"{cluster.url}/api/digit", models.plan, 8, 300, 10**6, stop)
        try:
            time.sleep(1)
            result = action()
            time.sleep(1)
        finally:
            stop.set()
        return load.result(timeout=60), result


def roll_out_and_back(cluster: Cluster, models: Models) -> dict[str, Any]:
    started = time.monotonic()
    rolled_out = deploy(cluster, str(models.new))
    after_rollout = [loaded_versions(server) for server in cluster.replicas]
    rollout_s = time.monotonic() - started
    rolled_back = deploy(cluster, "--rollback")
    after_rollback = [loaded_versions(server) for server in cluster.replicas]
    return {
        "runs": (rolled_out, rolled_back),
        "versions": (after_rollout, after_rollback),
        "seconds": (rollout_s, time.monotonic() - started),
    }


@pytest.mark.load
def test_rollout_and_rollback_under_load_fail_no_request(cluster: Cluster, models: Models) -> None:
    outcomes, done = under_load(cluster, models, lambda: roll_out_and_back(cluster, models))
    for run in done["runs"]:
        assert run.returncode == 0, run.stdout + run.stderr
    assert done["versions"] == ([["2"], ["2"]], [["1"], ["1"]])
    assert_no_failures(outcomes)
    answered_by = Counter(models.version_of(outcome) for outcome in outcomes)
    assert set(answered_by) == {"1", "2"}, answered_by
    rollout_s, both_s = done["seconds"]
    print(
        f"\n{len(outcomes)} requests, 0 failed, answers by version {dict(answered_by)}; "
        f"rollout {rollout_s:.0f}s, rollout and rollback {both_s:.0f}s"
    )


def answered_through_nginx(cluster: Cluster, server: TorchServe) -> int:
    """Requests nginx got a 200 for from ``server`` on their last try, from its access log."""
    address = urlsplit(server.inference_url).netloc
    count = 0
    for line in (cluster.nginx.folder / "logs" / "access.log").read_text().splitlines():
        found = re.search(r'upstream="([^"]*)" upstream_status="([^"]*)"', line)
        if found:
            addresses, statuses = (re.split(r", | : ", field) for field in found.groups())
            count += addresses[-1] == address and statuses[-1] == "200"
    return count


def wait_for(condition: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"{what} after {timeout}s"
        time.sleep(0.2)
    return time.monotonic() - started


def worker_pids(server: TorchServe) -> set[int]:
    (model,) = requests.get(f"{server.management_url}/models/digit", timeout=10).json()
    return {worker["pid"] for worker in model["workers"] if worker["status"] == "READY"}


def crash_and_recover(cluster: Cluster) -> dict[str, float]:
    """Kill the first replica's frontend, restart it, see nginx use it, then kill the second's workers."""
    first, second = cluster.replicas
    times: dict[str, float] = {}
    os.kill(first.pid(), signal.SIGKILL)
    wait_for(lambda: first.pid() is None, 10, "the killed frontend still runs")
    time.sleep(1)
    times["restart_s"] = wait_for(lambda: bool(first.start()), 180, "no restart")
    before = answered_through_nginx(cluster, first)
    rejoined = lambda: answered_through_nginx(cluster, first) > before  # noqa: E731
    times["rejoined_s"] = wait_for(rejoined, 30, "nginx sends the restarted replica nothing")
    workers = worker_pids(second)
    for worker in workers:
        os.kill(worker, signal.SIGKILL)
    times["workers_back_s"] = wait_for(lambda: worker_pids(second) - workers, 120, "no new worker")
    return times


@pytest.mark.load
def test_a_replica_crash_fails_no_request_and_the_replica_rejoins(cluster: Cluster, models: Models) -> None:
    outcomes, times = under_load(cluster, models, lambda: crash_and_recover(cluster))
    assert_no_failures(outcomes)
    assert all(models.version_of(outcome) == "1" for outcome in outcomes)
    slowest = max(outcome.elapsed for outcome in outcomes)
    print(
        f"\n{len(outcomes)} requests, 0 failed; killed replica restarted in {times['restart_s']:.0f}s, "
        f"answered again {times['rejoined_s']:.1f}s later; workers back in {times['workers_back_s']:.0f}s; "
        f"slowest answer {slowest:.1f}s"
    )
    assert all(server.pid() is not None for server in cluster.replicas)


# --- metrics -----------------------------------------------------------------------------------


def scraped(server: TorchServe) -> str:
    return requests.get(f"{server.metrics_url}/metrics", timeout=10).text


@pytest.mark.slow
def test_metrics_api_shows_torchserve_and_handler_metrics(cluster: Cluster, models: Models) -> None:
    for number in range(4):
        requests.post(f"{cluster.replicas[0].predict_url()}", timeout=30, **models.plan(number)[1])
    handler_counts = r'\ndigit_requests_total\{status="200",ModelVersion="1",ModelName="digit",'
    wait_for(lambda: re.search(handler_counts, scraped(cluster.replicas[0])), 10, "no handler counts")
    text = scraped(cluster.replicas[0])
    for name in ("ts_inference_requests_total", "ts_inference_latency_microseconds", "Requests2XX"):
        assert f"\n{name}{{" in text, name
    assert re.search(r'\ndigit_predictions_total\{digit="\d",', text)
    for stem in ("batches", "preprocess_milliseconds", "inference_milliseconds"):
        name = f"digit_{stem}_total"
        assert re.search(rf"\n{name}\{{ModelVersion=\"1\",", text), name


def blank_total(prometheus: Prometheus) -> float:
    result = prometheus.query('sum(digit_refused_images_total{reason="blank"})')
    return float(result[0]["value"][1]) if result else 0.0


@pytest.mark.slow
def test_prometheus_scrapes_every_replica(cluster: Cluster, tmp_path: Path) -> None:
    if not PROMETHEUS.is_file():
        pytest.skip(f"needs Prometheus at {PROMETHEUS} (apt-get install prometheus)")
    (tmp_path / "prometheus.yml").write_text(render_config(cluster.replicas, scrape_interval="1s"))
    prometheus = Prometheus(tmp_path, tmp_path / "prometheus.yml", f"127.0.0.1:{free_ports(1)[0]}")
    prometheus.start()
    try:
        wait_for(lambda: len(prometheus.query('up{job="torchserve"} == 1')) == 2, 30, "replicas not scraped")
        before = blank_total(prometheus)
        for _ in range(4):
            requests.post(f"{cluster.url}/api/digit", data=ERRORS["blank"][0]["data"], timeout=30)
        wait_for(lambda: blank_total(prometheus) >= before + 4, 30, "refused images not counted")
        by_replica = prometheus.query('sum by (instance) (digit_requests_total{status="200"})')
    finally:
        prometheus.stop()
    assert len(by_replica) == 2 and all(float(series["value"][1]) > 0 for series in by_replica)


# --- a page of another origin ------------------------------------------------------------------


@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Caller]:
    with caller_page(tmp_path_factory.mktemp("caller")) as page:
        yield page


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
def test_a_page_of_another_origin_calls_the_api_through_nginx(cluster: Cluster, caller: Caller) -> None:
    from playwright.sync_api import sync_playwright

    from digit_classifier.web.browser import launch

    png = png_variant("L_white_on_black")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page()
        answers = [caller.post(page, f"{cluster.url}/api/digit", png, raw) for raw in (False, True)]
        browser.close()
    for answer in answers:
        assert answer.get("status") == 200, answer
        assert set(answer["body"]) == {"prediction", "percentages"}
