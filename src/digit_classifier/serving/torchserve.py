"""A local TorchServe: derive its config, start it, wait until its models answer, stop it.

TorchServe keeps one pid file per temp directory, so a server here is a *home* folder
that holds its ``config.properties``, its ``tmp/`` (TMPDIR), its ``logs/``
(LOG_LOCATION and METRICS_LOCATION) and, with token authorisation on, the
``key_file.json`` TorchServe writes into the directory it starts in. ``scripts/serve.py``
(the project's server on its fixed ports), the benchmarks and the tests (private servers
on free ports) all start TorchServe through :class:`TorchServe`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ts.model_server import load_properties

from digit_classifier.checkout import CHECKOUT, CONFIGS
from digit_classifier.processes import sigterm_unwinds

CONFIG_DIR = CONFIGS / "torchserve"
"""The checkout's TorchServe configs: ``config.properties``, ``model-config.yaml``, ``log4j2.xml``,
``metrics.yaml``."""
DEFAULT_CONFIG = CONFIG_DIR / "config.properties"
DEFAULT_LOG_CONFIG = CONFIG_DIR / "log4j2.xml"
PID_FILE = ".model_server.pid"
KEY_FILE = "key_file.json"
MANIFEST = "MAR-INF/MANIFEST.json"

PORT_KEYS = (
    "inference_address",
    "management_address",
    "metrics_address",
    "grpc_inference_port",
    "grpc_management_port",
)


class ServeError(Exception):
    """TorchServe did not start, or is not ready."""


class SetupError(ServeError):
    """A missing config or model archive, or a server already running."""


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


def derive_config(
    source: Path, target: Path, model_store: Path, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Copy a TorchServe config with every API (HTTP and gRPC) on free loopback ports.

    A relative ``metrics_config`` (relative to the checkout, where ``scripts/serve.py`` runs)
    becomes absolute: the workers read it from their model folders. ``overrides`` replace or
    add properties after that; returns the properties written.
    """
    ports = free_ports(len(PORT_KEYS))
    metrics_config = load_properties(str(source)).get("metrics_config")
    derived = {
        "inference_address": f"http://127.0.0.1:{ports[0]}",
        "management_address": f"http://127.0.0.1:{ports[1]}",
        "metrics_address": f"http://127.0.0.1:{ports[2]}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": str(ports[3]),
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": str(ports[4]),
        "model_store": str(model_store),
        **({"metrics_config": str(CHECKOUT / metrics_config)} if metrics_config else {}),
        **(overrides or {}),
    }
    lines = [
        line
        for line in source.read_text().splitlines()
        if line.startswith("#") or line.split("=", 1)[0].strip() not in derived
    ]
    lines += [f"{key}={value}" for key, value in derived.items()]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    return load_properties(str(target))


def read_manifest(mar: Path) -> dict:
    """A model archive's ``MAR-INF/MANIFEST.json``: ``["model"]`` holds ``modelName`` and
    ``modelVersion``, which TorchServe registers the archive under."""
    with zipfile.ZipFile(mar) as archive:
        return json.loads(archive.read(MANIFEST))


def model_names(models: list[str]) -> list[str]:
    """``["digit=digit.mar"]`` -> ``["digit"]``; a bare ``digit.mar`` gives ``digit``."""
    names = []
    for entry in models:
        for model in entry.split(","):
            model = model.strip()
            if model and model.lower() != "all":
                names.append(model.split("=", 1)[0] if "=" in model else Path(model).stem)
    return names


def call_json(
    method: str,
    url: str,
    token: str | None = None,
    body: bytes | None = None,
    content_type: str = "application/octet-stream",
    timeout: float = 30,
) -> object:
    """One API call; an HTTP error or no answer raises :class:`ServeError` with TorchServe's message."""
    request = urllib.request.Request(url, data=body, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            text = json.loads(text).get("message", text)
        raise ServeError(f"{method} {url}: {error.code} {text}") from None
    except (OSError, ValueError) as error:
        raise ServeError(f"{method} {url}: {error}") from None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class TorchServe:
    """One TorchServe, started and stopped from ``home``.

    Args:
        home: the folder it starts in; relative ``config`` and ``logs`` are under it.
        config: its ``config.properties``.
        logs: LOG_LOCATION and METRICS_LOCATION.
        log_config: the frontend's log4j2.xml, or None for TorchServe's own.
        tmp: its TMPDIR (where the pid file is); None keeps the caller's, so that
            ``torchserve --stop`` run by hand finds the server too.
        model_store: the model store, instead of the config's ``model_store``.
    """

    home: Path
    config: Path = DEFAULT_CONFIG
    logs: Path = Path("logs")
    log_config: Path | None = DEFAULT_LOG_CONFIG
    tmp: Path | None = None
    model_store: Path | None = None

    @property
    def properties(self) -> dict[str, str]:
        return load_properties(str(self.home / self.config))

    def url(self, key: str, default: str) -> str:
        url = self.properties.get(key, default).rstrip("/")
        return url.replace("://0.0.0.0", "://127.0.0.1")

    @property
    def inference_url(self) -> str:
        return self.url("inference_address", "http://127.0.0.1:8080")

    @property
    def management_url(self) -> str:
        return self.url("management_address", "http://127.0.0.1:8081")

    @property
    def metrics_url(self) -> str:
        return self.url("metrics_address", "http://127.0.0.1:8082")

    def predict_url(self, model: str = "digit", version: str | None = None) -> str:
        return f"{self.inference_url}/predictions/{model}" + (f"/{version}" if version else "")

    def management(self, method: str, path: str, timeout: float = 30, **params: object) -> object:
        """A management API call, e.g. ``management("GET", "/models/digit/all")``; see :func:`call_json`."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        token = self.tokens().get("management")
        return call_json(method, f"{self.management_url}{path}{query}", token, timeout=timeout)

    @property
    def store(self) -> Path:
        return self.home / (self.model_store or self.properties.get("model_store", "model_store"))

    @property
    def log_dir(self) -> Path:
        return self.home / self.logs

    @property
    def pid_file(self) -> Path:
        return (self.tmp or Path(tempfile.gettempdir())) / PID_FILE

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
        env.update(LOG_LOCATION=str(self.log_dir), METRICS_LOCATION=str(self.log_dir))
        if self.tmp is not None:
            env.update(TMPDIR=str(self.tmp), TEMP=str(self.tmp))
        return env

    def tokens(self) -> dict[str, str]:
        """Bearer keys from ``key_file.json`` when token authorization is on."""
        if self.properties.get("disable_token_authorization", "false").lower() == "true":
            return {}
        try:
            keys = json.loads((self.home / KEY_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return {
            api: entry["key"] for api, entry in keys.items() if isinstance(entry, dict) and "key" in entry
        }

    def pid(self) -> int | None:
        """The frontend's pid, from TorchServe's pid file, if that process still exists."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (OSError, ValueError, IndexError):
            return None
        return pid

    def readiness(self, names: list[str]) -> tuple[bool, str]:
        """Whether /ping is healthy and each model has its READY workers, and what is missing."""
        keys = self.tokens()
        try:
            ping = call_json("GET", f"{self.inference_url}/ping", keys.get("inference"), timeout=5)
        except ServeError as error:
            return False, f"/ping: {error}"
        if not isinstance(ping, dict) or ping.get("status") != "Healthy":
            return False, f"/ping: {ping}"
        for name in names:
            try:
                described = self.management("GET", f"/models/{name}", timeout=5)
            except ServeError as error:
                return False, f"model {name}: {error}"
            for version in described:
                ready = sum(worker.get("status") == "READY" for worker in version.get("workers", []))
                wanted = max(1, int(version.get("minWorkers", 1)))
                if ready < wanted:
                    return False, f"model {name}: {ready} of {wanted} workers READY"
        return True, "ready"

    def loaded_model_names(self, models: list[str]) -> list[str]:
        return model_names(models or [self.properties.get("load_models", "")])

    def start(self, models: list[str] | None = None, timeout: float = 120) -> str:
        """Start in the background; return once every model it loads has its workers READY."""
        self.launch(models)
        return self.wait_until_ready(self.loaded_model_names(models or []), timeout)

    def launch(self, models: list[str] | None = None) -> None:
        """``torchserve --start``, which returns while the models are still loading."""
        models = models or []
        self._check_setup(models)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.tmp is not None:
            self.tmp.mkdir(parents=True, exist_ok=True)
        console = self.log_dir / "console.log"
        with console.open("ab") as out:
            result = subprocess.run(
                self._start_command(models),
                cwd=self.home,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
            )
        if result.returncode != 0:
            raise ServeError(f"torchserve --start failed:\n{_tail(console)}")

    def wait_until_ready(self, names: list[str], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        state = "starting"
        while time.monotonic() < deadline:
            ready, state = self.readiness(names)
            if ready:
                return (
                    f"TorchServe ready at {self.inference_url} serving {', '.join(names)} (pid {self.pid()})"
                )
            if self.pid() is None:
                raise ServeError(f"TorchServe exited while starting:\n{_tail(self.log_dir / 'console.log')}")
            time.sleep(0.25)
        self.stop()
        raise ServeError(
            f"TorchServe not ready after {timeout:.0f}s ({state}); stopped it.\n"
            f"{_tail(self.log_dir / 'ts_log.log')}"
        )

    def _check_setup(self, models: list[str]) -> None:
        config = self.home / self.config
        if not config.is_file():
            raise SetupError(f"TorchServe config not found: {config}")
        if self.log_config is not None and not self.log_config.is_file():
            raise SetupError(f"log4j2 config not found: {self.log_config}")
        store = self.store
        for entry in ",".join(models or [self.properties.get("load_models", "")]).split(","):
            mar = entry.split("=", 1)[-1].strip()
            if mar.endswith(".mar") and "://" not in mar and not (store / mar).is_file():
                raise SetupError(f"{store / mar} not found; build it first (python scripts/archive.py).")
        if self.pid() is not None:
            raise SetupError(f"TorchServe is already running (pid file {self.pid_file}); stop it first.")

    def _start_command(self, models: list[str]) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "ts.model_server",
            "--start",
            "--ncs",
            "--ts-config",
            str(self.config),
        ]
        command += ["--model-store", str(self.store)]
        if models:
            command += ["--models", *models]
        if self.log_config is not None:
            command += ["--log-config", str(self.log_config)]
        return command

    def stop(self) -> str:
        """``torchserve --stop`` for this server; a server that will not stop is killed."""
        result = subprocess.run(
            [sys.executable, "-m", "ts.model_server", "--stop", "--foreground"],
            cwd=self.home,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.kill()
        return (result.stdout + result.stderr).strip() or "TorchServe has stopped."

    def kill(self) -> None:
        """SIGKILL the frontend if it is still alive (its workers exit when it is gone)."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def private_torchserve(
    home: Path,
    model_store: Path,
    source_config: Path = DEFAULT_CONFIG,
    overrides: Mapping[str, str] | None = None,
    log_config: Path | None = DEFAULT_LOG_CONFIG,
    timeout: float = 120,
) -> Iterator[TorchServe]:
    """A TorchServe on free loopback ports in ``home``, with its own TMPDIR; stopped after,
    also when this process gets SIGTERM."""
    derive_config(source_config, home / "config.properties", model_store, overrides)
    server = TorchServe(home, Path("config.properties"), Path("logs"), log_config, tmp=home / "tmp")
    with sigterm_unwinds():
        try:
            server.start(timeout=timeout)
            yield server
        finally:
            server.stop()
