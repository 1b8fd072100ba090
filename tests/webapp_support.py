"""A real TorchServe and the UI server in front of it, shared by test_webapp and test_browser.

The model is a randomly initialised network served by one worker (no training: the UI
tests check plumbing, not accuracy) unless ``DIGIT_MAR`` names a trained ``.mar``, in
which case the tests also check that drawn and uploaded digits are read correctly.

Both test modules use one TorchServe: the first session fixture that asks starts it
and the last one torn down stops it. :func:`caller_page` is a page of another origin, for
the CORS tests of the page server and of nginx.
"""

from __future__ import annotations

import base64
import functools
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from serving_support import (
    CONFIG_DIR,
    Server,
    archive,
    make_fake_run,
    start_server,
    stop_server,
)

from digit_classifier.serving.torchserve import free_ports
from digit_classifier.web.server import STATIC_DIR, Settings, UIServer, make_server

WEB_DIR = STATIC_DIR
TRAINED_MAR = Path(os.environ["DIGIT_MAR"]).resolve() if os.environ.get("DIGIT_MAR") else None
"""A well-trained archive to check answers with; None means accuracy is not checked."""


@dataclass
class UIStack:
    torchserve: Server
    ui: UIServer

    @property
    def url(self) -> str:
        return self.ui.url


def model_store(base: Path) -> Path:
    store = base / "store"
    if TRAINED_MAR is not None:
        if not TRAINED_MAR.is_file():
            pytest.fail(f"DIGIT_MAR={TRAINED_MAR} is not a file")
        store.mkdir(parents=True)
        shutil.copy2(TRAINED_MAR, store / "digit.mar")
        return store
    model_config = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())
    model_config.update(minWorkers=1, maxWorkers=1)
    (base / "model-config.yaml").write_text(yaml.safe_dump(model_config))
    archive(make_fake_run(base / "run"), store, "--model-config", str(base / "model-config.yaml"))
    return store


@contextmanager
def running_ui(torchserve_url: str, web_dir: Path = WEB_DIR, **settings: object) -> Iterator[UIServer]:
    """The UI server on a free loopback port, in a thread of this process."""
    config = Settings(web_dir=web_dir, torchserve_url=torchserve_url, **settings)
    server = make_server(config, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def dead_url() -> str:
    """A loopback address nothing listens on."""
    return f"http://127.0.0.1:{free_ports(1)[0]}"


class SharedTorchServe:
    """One TorchServe for every module that asks, stopped when the last user is done."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.users = 0

    @contextmanager
    def use(self, factory: pytest.TempPathFactory) -> Iterator[Server]:
        if self.server is None:
            base = factory.mktemp("ui_torchserve")
            self.server = start_server(base / "home", CONFIG_DIR / "config.properties", model_store(base))
        self.users += 1
        try:
            yield self.server
        finally:
            self.users -= 1
            if self.users == 0:
                server, self.server = self.server, None
                stop_server(server)


SHARED = SharedTorchServe()


@contextmanager
def ui_stack(factory: pytest.TempPathFactory) -> Iterator[UIStack]:
    with SHARED.use(factory) as torchserve, running_ui(torchserve.inference) as ui:
        yield UIStack(torchserve, ui)


CALLER_PAGE = """<!doctype html>
<title>A page of another origin</title>
<script>
  // POST a PNG to url as a form upload (a simple request) or as a raw image/png body (which
  // the browser preflights); the answer, or the error fetch raised when CORS refused it.
  async function post(url, png, raw) {
    const blob = new Blob([Uint8Array.from(atob(png), (c) => c.charCodeAt(0))], { type: "image/png" });
    const form = new FormData();
    form.append("file", blob, "digit.png");
    const init = raw
      ? { method: "POST", headers: { "Content-Type": "image/png" }, body: blob }
      : { method: "POST", body: form };
    try {
      const response = await fetch(url, init);
      return { status: response.status, body: await response.json() };
    } catch (error) {
      return { error: String(error) };
    }
  }
</script>
"""


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class Caller:
    """A page served from its own loopback port: another origin than the API it calls."""

    def __init__(self, url: str) -> None:
        self.url = url

    @property
    def origin(self) -> str:
        return self.url.rstrip("/")

    def post(self, page: Any, api_url: str, png: bytes, raw: bool = False) -> dict[str, Any]:
        """Open the caller in ``page`` (Playwright) and POST ``png`` to ``api_url`` from it."""
        page.goto(self.url)
        encoded = base64.b64encode(png).decode()
        return page.evaluate("([url, png, raw]) => post(url, png, raw)", [api_url, encoded, raw])


@contextmanager
def caller_page(folder: Path) -> Iterator[Caller]:
    """:data:`CALLER_PAGE` served by the standard library's file server, without CORS headers."""
    (folder / "index.html").write_text(CALLER_PAGE)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Caller(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
