"""A real TorchServe, started by scripts/serve.py from a freshly trained and archived model.

The server gets free ports, its own TMPDIR (TorchServe keeps one pid file per temp dir)
and a config derived from configs/torchserve/config.properties, so it runs beside a
developer's server. It is always stopped at the end of the session.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import yaml
from conftest import DATA_DIR, HAVE_MNIST, run_script, small_run_overrides
from serving_support import (
    CONFIG_DIR,
    ERRORS,
    ROOT,
    Server,
    archive,
    assert_prediction,
    offline_predictions,
    oversize_png,
    png_variant,
    start_server,
    stop_server,
)

from digit_classifier.processes import alive

pytestmark = pytest.mark.slow

DRAWN_DIR = DATA_DIR / "drawn-digits-dev"
HAVE_DRAWN = (DRAWN_DIR / "index.csv").is_file()


@pytest.fixture(scope="session")
def trained_run(small_mnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("serving_run") / "run"
    run_script("train.py", *small_run_overrides(small_mnist, output, "debug=fast", "trainer.max_epochs=1"))
    return output


@pytest.fixture(scope="session")
def model_store(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained run archived with the project's model config, batching made visible."""
    base = tmp_path_factory.mktemp("serving_store")
    model_config = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())
    model_config.update(batchSize=8, maxBatchDelay=50)
    (base / "model-config.yaml").write_text(yaml.safe_dump(model_config))
    archive(trained_run, base / "store", "--model-config", str(base / "model-config.yaml"))
    return base / "store"


@pytest.fixture(scope="session")
def server(model_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("torchserve"), CONFIG_DIR / "config.properties", model_store
    )
    try:
        yield running
    finally:
        stop_server(running)


def test_model_is_ready_with_batching(server: Server) -> None:
    assert requests.get(f"{server.inference}/ping", timeout=5).json() == {"status": "Healthy"}
    (model,) = requests.get(f"{server.management}/models/digit", timeout=5).json()
    assert model["batchSize"] == 8 and model["maxBatchDelay"] == 50
    workers = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())["minWorkers"]
    assert [worker["status"] for worker in model["workers"]] == ["READY"] * workers


def test_worker_uses_the_packaged_code(server: Server) -> None:
    log = (server.home / "logs" / "model_log.log").read_text()
    found = re.search(r"digit_classifier from (\S+)", log)
    assert found and not found.group(1).startswith(str(ROOT)), found and found.group(1)


def test_multipart_file_and_data_fields(server: Server) -> None:
    png = png_variant("L_black_on_white")
    by_file = assert_prediction(
        requests.post(server.predict_url, files={"file": ("d.png", png, "image/png")}, timeout=30)
    )
    by_data = assert_prediction(
        requests.post(server.predict_url, files={"data": ("d.png", png, "image/png")}, timeout=30)
    )
    assert by_file == by_data


def test_raw_body_post_and_put(server: Server, tmp_path: Path) -> None:
    png = png_variant("RGBA_ink_only_in_alpha")
    posted = assert_prediction(
        requests.post(server.predict_url, data=png, headers={"Content-Type": "image/png"}, timeout=30)
    )
    put = assert_prediction(requests.put(server.predict_url, data=png, timeout=30))
    assert posted == put
    if shutil.which("curl"):
        (tmp_path / "d.png").write_bytes(png)
        curl = subprocess.run(
            ["curl", "-sS", "-T", str(tmp_path / "d.png"), server.predict_url],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert json.loads(curl.stdout) == posted


@pytest.mark.parametrize("case", ERRORS)
def test_error_statuses_and_bodies(server: Server, case: str) -> None:
    kwargs, status, message = ERRORS[case]
    response = requests.post(server.predict_url, timeout=30, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status
    if message:
        assert body["error"] == message


def test_body_over_max_request_size_is_refused_by_the_frontend(server: Server) -> None:
    """Netty answers 413 itself (no JSON body) before the handler ever sees the request."""
    response = requests.post(server.predict_url, data=oversize_png(7 * 1024 * 1024), timeout=30)
    assert response.status_code == 413


def test_worker_survives_bad_input(server: Server) -> None:
    def worker_pids() -> list[int]:
        (model,) = requests.get(f"{server.management}/models/digit", timeout=5).json()
        return [worker["pid"] for worker in model["workers"]]

    before = worker_pids()
    for kwargs, status, _ in ERRORS.values():
        assert requests.post(server.predict_url, timeout=30, **kwargs).status_code == status
    assert_prediction(requests.post(server.predict_url, data=png_variant("P_palette"), timeout=30))
    assert worker_pids() == before


def test_concurrent_mixed_requests_are_batched_and_answered_each(server: Server, tmp_path: Path) -> None:
    kinds = [
        "L_white_on_black",
        "RGB_black_on_white",
        "P_palette",
        "I16_black_on_white",
        "LA_ink_only_in_alpha",
    ]
    files = []
    for kind in kinds:
        files.append(tmp_path / f"{kind}.png")
        files[-1].write_bytes(png_variant(kind, (240, 320)))
    offline = offline_predictions(server.mar, files)
    jobs = [(files[i % len(files)], None) if i % 4 else (None, i) for i in range(48)]

    def send(job: tuple[Path | None, int | None]) -> requests.Response:
        path, bad = job
        data = path.read_bytes() if path else (b"" if bad % 8 else b"not a png")
        return requests.post(server.predict_url, files={"file": ("x.png", data, "image/png")}, timeout=60)

    before = answered_and_batches(server)
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(send, jobs))
    for (path, bad), response in zip(jobs, responses, strict=True):
        if path:
            body = assert_prediction(response)
            assert body["prediction"] == offline[str(path)]["prediction"]
            assert body["percentages"] == pytest.approx(offline[str(path)]["percentages"], abs=1e-5)
        else:
            assert response.status_code == (400 if bad % 8 else 415)
            assert response.json()["status"] == response.status_code
    assert batched(server, before, len(jobs)), "no batch held more than one request"


def answered_and_batches(server: Server) -> tuple[float, float]:
    """Requests the handler answered and batches it ran, from the metrics API: the sums of
    ``digit_requests_total`` and ``digit_batches_total``."""
    text = requests.get(f"{server.torchserve.metrics_url}/metrics", timeout=5).text

    def total(series: str) -> float:
        return sum(float(value) for value in re.findall(rf"^{series}{{[^}}]*}} (\S+)$", text, re.MULTILINE))

    return total("digit_requests_total"), total("digit_batches_total")


def batched(server: Server, before: tuple[float, float], sent: int, wait: float = 5) -> bool:
    """Whether the ``sent`` requests since ``before`` ran in fewer batches than requests."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answered, batches = (
            now - then for now, then in zip(answered_and_batches(server), before, strict=True)
        )
        if answered >= sent:
            return batches < answered
        time.sleep(0.2)
    return False


def test_served_equals_offline_predict(server: Server, tmp_path: Path) -> None:
    files = []
    for kind in ["L_white_on_black", "RGB_blue_on_white", "RGBA_white_ink_in_alpha", "1_bilevel"]:
        for size in [(280, 280), (90, 200)]:
            files.append(tmp_path / f"{kind}_{size[0]}x{size[1]}.png")
            files[-1].write_bytes(png_variant(kind, size))
    if HAVE_DRAWN:
        files += sorted(DRAWN_DIR.glob("*/*/*.png"))[::50]
    offline = offline_predictions(server.mar, files)

    def send(path: Path) -> requests.Response:
        return requests.post(
            server.predict_url, files={"file": (path.name, path.read_bytes(), "image/png")}, timeout=60
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        served = [assert_prediction(response) for response in pool.map(send, files)]
    for path, body in zip(files, served, strict=True):
        assert body["prediction"] == offline[str(path)]["prediction"], path
        assert body["percentages"] == pytest.approx(offline[str(path)]["percentages"], abs=1e-5)


@pytest.mark.skipif(
    not (HAVE_MNIST and HAVE_DRAWN),
    reason=f"needs MNIST and drawn-digits-dev under {DATA_DIR} (set DIGIT_DATA_DIR)",
)
def test_eval_serving_script(server: Server, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "eval_serving.py"),
            "--url",
            server.predict_url,
            "--data-dir",
            str(DATA_DIR),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--variants-dir",
            str(tmp_path / "variants"),
            "--limit",
            "40",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    datasets = json.loads(report.read_text())["datasets"]
    assert {name: (d["n"], d["errors"]) for name, d in datasets.items()} == {
        "mnist_test": (40, 0),
        "drawn_digits_dev": (40, 0),
        "variants": (40, 0),
    }
    assert len(list((tmp_path / "cache").glob("*.png"))) == 10_000


def test_exposed_config_requires_the_inference_token(model_store: Path, tmp_path: Path) -> None:
    exposed = start_server(tmp_path / "exposed", CONFIG_DIR / "config.exposed.properties", model_store)
    try:
        keys = json.loads((exposed.home / "key_file.json").read_text())
        png = png_variant("L_white_on_black")
        assert requests.post(exposed.predict_url, data=png, timeout=30).status_code in (400, 401)
        wrong = {"Authorization": f"Bearer {keys['management']['key']}"}
        assert requests.post(exposed.predict_url, data=png, headers=wrong, timeout=30).status_code in (
            400,
            401,
        )
        right = {"Authorization": f"Bearer {keys['inference']['key']}"}
        assert_prediction(requests.post(exposed.predict_url, data=png, headers=right, timeout=30))
    finally:
        stop_server(exposed)


def test_private_server_is_stopped_when_its_owner_gets_sigterm(model_store: Path, tmp_path: Path) -> None:
    """A benchmark killed with SIGTERM (``kill``, a CI timeout) stops the server it started."""
    owner = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from digit_classifier.serving.torchserve import private_torchserve

        with private_torchserve(Path({str(tmp_path)!r}), Path({str(model_store)!r})) as server:
            print("ready", server.pid(), flush=True)
            time.sleep(300)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", owner], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    frontend = None
    try:
        line = process.stdout.readline().split()
        assert line[:1] == ["ready"], line
        frontend = int(line[1])
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 128 + signal.SIGTERM
        assert not alive(frontend)
    finally:
        process.kill()
        if frontend is not None and alive(frontend):
            os.kill(frontend, signal.SIGKILL)
    assert not (tmp_path / "tmp" / ".model_server.pid").exists()
