"""The UI server: static files, and ``POST /api/digit`` forwarded to TorchServe.

Forwarding rules are checked fast against a stand-in upstream; the seed contract and
the error pass-through are then checked against a real TorchServe (marked slow).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from serving_support import ERRORS, ROOT, assert_prediction, oversize_png, png_variant
from webapp_support import UIStack, dead_url, running_ui, ui_stack

from digit_classifier.web.server import DEFAULT_MAX_BODY_BYTES, STATIC_DIR

PNG = png_variant("L_black_on_white")


class Upstream(BaseHTTPRequestHandler):
    """Stands in for TorchServe; the model name in the path picks the behaviour."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        model = self.path.rsplit("/", 1)[-1]
        self.seen.append(self.path)
        if model == "echo":
            answer = {
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
            self.reply(200, json.dumps(answer).encode(), "application/json")
        elif model == "html500":
            self.reply(500, b"<html><body>Internal error</body></html>", "text/html")
        elif model == "text404":
            self.reply(404, b"no such model", "text/plain")
        elif model == "empty413":
            self.reply(413, b"", "text/plain")
        elif model == "text200":
            self.reply(200, b"7", "text/plain")
        elif model == "badjson":
            self.reply(500, b"{not json", "application/json")
        elif model == "slow":
            time.sleep(2)
            self.reply(200, b"{}", "application/json")

    def reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def post_file(url: str, data: bytes = PNG) -> requests.Response:
    return requests.post(f"{url}api/digit", files={"file": ("d.png", data, "image/png")}, timeout=30)


def raw_request(url: str, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    """A request whose path is sent exactly as given (no client-side normalising)."""
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)
    if body is not None:
        connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


def assert_json_error(response: requests.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["status"] == status and isinstance(body["error"], str) and body["error"]
    return body["error"]


# --- forwarding, against a stand-in upstream --------------------------------------------------


def test_body_and_content_type_are_forwarded_unchanged(upstream: str) -> None:
    prepared = requests.Request("POST", "http://x/", files={"file": ("d.png", PNG, "image/png")}).prepare()
    with running_ui(upstream, model="echo", token="secret") as ui:
        response = requests.post(
            f"{ui.url}api/digit", data=prepared.body, headers=prepared.headers, timeout=10
        )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["path"] == "/predictions/echo"
    assert echoed["content_type"] == prepared.headers["Content-Type"]
    assert echoed["sha256"] == hashlib.sha256(prepared.body).hexdigest()
    assert echoed["authorization"] == "Bearer secret"


@pytest.mark.parametrize(
    ("model", "status", "fragment"),
    [
        ("html500", 500, "Internal Server Error"),
        ("text404", 404, "no such model"),
        ("empty413", 413, "answered 413"),
        ("badjson", 500, "{not json"),
        ("text200", 502, "not JSON"),
    ],
)
def test_answers_that_are_not_json_are_wrapped(upstream: str, model: str, status: int, fragment: str) -> None:
    with running_ui(upstream, model=model) as ui:
        message = assert_json_error(post_file(ui.url), status)
    assert fragment in message


def test_slow_upstream_gives_504(upstream: str) -> None:
    with running_ui(upstream, model="slow", timeout=0.5) as ui:
        assert "did not answer" in assert_json_error(post_file(ui.url), 504)


def test_model_server_down_gives_503() -> None:
    url = dead_url()
    with running_ui(url) as ui:
        message = assert_json_error(post_file(ui.url), 503)
    assert message.startswith("Model server unavailable") and url in message


def test_body_over_the_cap_is_refused_before_forwarding(upstream: str) -> None:
    before = len(Upstream.seen)
    with running_ui(upstream, model="echo", max_body_bytes=1000) as ui:
        assert "too large" in assert_json_error(post_file(ui.url, b"\x89PNG" + bytes(5000)), 413)
        assert post_file(ui.url, b"\x89PNG").status_code == 200
    assert len(Upstream.seen) == before + 1


def test_chunked_upload_needs_a_length(upstream: str) -> None:
    with running_ui(upstream, model="echo") as ui:
        response = requests.post(f"{ui.url}api/digit", data=iter([PNG]), timeout=10)
    assert_json_error(response, 411)


# --- static files and methods -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ui_alone() -> Iterator[str]:
    with running_ui(dead_url()) as ui:
        yield ui.url


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/", "text/html; charset=utf-8", b'<canvas id="pad"'),
        ("/index.html", "text/html; charset=utf-8", b"aria-live"),
        ("/style.css", "text/css; charset=utf-8", b"touch-action: none"),
        ("/app.js?v=1", "text/javascript; charset=utf-8", b"api/digit"),
    ],
)
def test_static_files(ui_alone: str, path: str, content_type: str, marker: bytes) -> None:
    response = requests.get(ui_alone.rstrip("/") + path, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == content_type
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert marker in response.content


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/..%2fpyproject.toml",
        "/%2e%2e%2f%2e%2e%2fetc/passwd",
        "//etc/passwd",
        "/%2fetc%2fpasswd",
        "/..\\pyproject.toml",
        "/index.html%00.css",
        "/nope.html",
        "/web",
    ],
)
def test_paths_outside_web_are_not_served(ui_alone: str, path: str) -> None:
    response = raw_request(ui_alone, "GET", path)
    assert response.status == 404
    assert b"[project]" not in response.body and b"root:" not in response.body


def test_symlink_out_of_the_web_folder_is_not_followed(tmp_path: Path) -> None:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html>")
    (web / "secret.txt").symlink_to(ROOT / "pyproject.toml")
    with running_ui(dead_url(), web_dir=web) as ui:
        assert requests.get(f"{ui.url}index.html", timeout=10).status_code == 200
        assert requests.get(f"{ui.url}secret.txt", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/api/digit", 405, "OPTIONS, POST"),
        ("PUT", "/api/digit", 405, "OPTIONS, POST"),
        ("DELETE", "/api/digit", 405, "OPTIONS, POST"),
        ("POST", "/index.html", 405, "GET, HEAD"),
        ("OPTIONS", "/", 405, "GET, HEAD"),
        ("POST", "/api/other", 404, None),
    ],
)
def test_wrong_methods_and_paths(
    ui_alone: str, method: str, path: str, status: int, allow: str | None
) -> None:
    response = raw_request(ui_alone, method, path, b"x" if method in ("POST", "PUT") else None)
    assert response.status == status
    assert response.getheader("Content-Type") == "application/json"
    assert json.loads(response.body)["status"] == status
    assert response.getheader("Allow") == allow


# --- callers from other origins (CORS) ------------------------------------------------------

PREFLIGHT = {"Origin": "http://127.0.0.1:5001", "Access-Control-Request-Method": "POST"}


def test_preflight_is_answered_for_any_origin_by_default(ui_alone: str) -> None:
    response = requests.options(f"{ui_alone}api/digit", headers=PREFLIGHT, timeout=10)
    assert response.status_code == 204 and response.content == b""
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "OPTIONS, POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert "Content-Length" not in response.headers


def test_answers_and_errors_carry_the_allowed_origin(upstream: str) -> None:
    origin = {"Origin": "http://127.0.0.1:5001"}
    with running_ui(upstream, model="echo") as ui:
        ok = requests.post(f"{ui.url}api/digit", data=PNG, headers=origin, timeout=10)
        refused = requests.get(f"{ui.url}api/digit", headers=origin, timeout=10)
        page = requests.get(ui.url, headers=origin, timeout=10)
    assert ok.status_code == 200 and ok.headers["Access-Control-Allow-Origin"] == "*"
    assert refused.status_code == 405 and refused.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Origin" not in page.headers, "the page itself is not an API"


def test_only_listed_origins_are_allowed(upstream: str) -> None:
    allowed = "http://127.0.0.1:5001"
    with running_ui(upstream, model="echo", cors_origins=(allowed,)) as ui:
        answers = {
            origin: requests.options(
                f"{ui.url}api/digit", headers={**PREFLIGHT, "Origin": origin}, timeout=10
            )
            for origin in (allowed, "http://elsewhere.example")
        }
    assert answers[allowed].headers["Access-Control-Allow-Origin"] == allowed
    assert "Access-Control-Allow-Origin" not in answers["http://elsewhere.example"].headers
    assert all(answer.headers["Vary"] == "Origin" for answer in answers.values())


def test_head_has_headers_and_no_body(ui_alone: str) -> None:
    response = raw_request(ui_alone, "HEAD", "/")
    assert response.status == 200 and response.body == b""
    assert int(response.getheader("Content-Length")) == (STATIC_DIR / "index.html").stat().st_size


def test_command_line_flags_and_environment() -> None:
    """``--port`` from a flag, the TorchServe address from the environment; no training stack."""
    port, torchserve = dead_url().rsplit(":", 1)[1], dead_url()
    env = {**os.environ, "DIGIT_TORCHSERVE_URL": torchserve, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "digit_classifier.web", "--port", port, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith(f"Digit UI at http://127.0.0.1:{port}/ -> {torchserve}"), line
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        message = assert_json_error(post_file(f"http://127.0.0.1:{port}/"), 503)
        assert torchserve in message
    finally:
        process.terminate()
        process.wait(timeout=10)
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, digit_classifier.web.server; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not any(name in imported for name in ("'lightning'", "'hydra'", "'torch'", "'requests'"))


# --- against a real TorchServe ----------------------------------------------------------------


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIStack]:
    with ui_stack(tmp_path_factory) as running:
        yield running


@pytest.mark.slow
def test_prediction_has_the_seed_contract(stack: UIStack) -> None:
    body = assert_prediction(post_file(stack.url))
    direct = requests.post(stack.torchserve.predict_url, files={"file": ("d.png", PNG)}, timeout=30)
    assert direct.json() == body


@pytest.mark.slow
@pytest.mark.parametrize("case", ERRORS)
def test_model_errors_pass_through(stack: UIStack, case: str) -> None:
    kwargs, status, message = ERRORS[case]
    response = requests.post(f"{stack.url}api/digit", timeout=30, **kwargs)
    error = assert_json_error(response, status)
    if message:
        assert error == message


@pytest.mark.slow
def test_oversized_upload_is_refused_by_the_ui(stack: UIStack) -> None:
    message = assert_json_error(post_file(stack.url, oversize_png(DEFAULT_MAX_BODY_BYTES + 1024)), 413)
    assert message.startswith("Upload too large")


@pytest.mark.slow
def test_torchserve_413_without_a_body_is_wrapped(stack: UIStack) -> None:
    """With the UI's cap raised, TorchServe's frontend refuses the body itself, without JSON."""
    with running_ui(stack.torchserve.inference, max_body_bytes=16 * 1024 * 1024) as ui:
        message = assert_json_error(post_file(ui.url, oversize_png(7 * 1024 * 1024)), 413)
    assert message.startswith("Model server answered 413")
