"""Start or stop TorchServe with the project's config and model store.

    python scripts/serve.py start [--config configs/torchserve/config.properties] [--timeout 120]
    python scripts/serve.py status
    python scripts/serve.py stop

``start`` runs ``torchserve --start`` in the background and returns once ``/ping`` is
healthy and every model named in ``load_models`` (or ``--models``) has ``minWorkers``
READY workers. Logs go to ``logs/torchserve`` (LOG_LOCATION / METRICS_LOCATION), the
console output to ``logs/torchserve/console.log``; the frontend logs as
``configs/torchserve/log4j2.xml`` says (``--log-config torchserve``: TorchServe's default,
which writes every request several times). TorchServe keeps its pid file in the temp
directory, so at most one server runs per TMPDIR and ``stop`` stops the one started with
the same TMPDIR. With token authorization enabled, TorchServe writes ``key_file.json``
into the directory it was started from; ``status`` and the readiness check read it from there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ts.model_server import load_properties

DEFAULT_CONFIG = Path("configs/torchserve/config.properties")
DEFAULT_LOG_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "torchserve" / "log4j2.xml"
DEFAULT_LOGS = Path("logs/torchserve")
KEY_FILE = Path("key_file.json")
PID_FILE = Path(tempfile.gettempdir()) / ".model_server.pid"


class ServeError(Exception):
    """TorchServe did not start, or is not ready; exit status 1."""


class SetupError(ServeError):
    """Missing config or model archive, or a server already running; exit status 2."""


def model_names(models: list[str]) -> list[str]:
    """``["digit=digit.mar"]`` -> ``["digit"]``; a bare ``digit.mar`` gives ``digit``."""
    names = []
    for entry in models:
        for model in entry.split(","):
            model = model.strip()
            if model and model.lower() != "all":
                names.append(model.split("=", 1)[0] if "=" in model else Path(model).stem)
    return names


def api_url(properties: dict[str, str], key: str, default: str) -> str:
    url = properties.get(key, default).rstrip("/")
    return url.replace("://0.0.0.0", "://127.0.0.1")


def tokens(properties: dict[str, str], key_file: Path = KEY_FILE) -> dict[str, str]:
    """Bearer keys from ``key_file.json`` when token authorization is on."""
    if properties.get("disable_token_authorization", "false").lower() == "true":
        return {}
    try:
        keys = json.loads(key_file.read_text())
    except (OSError, ValueError):
        return {}
    return {api: entry["key"] for api, entry in keys.items() if isinstance(entry, dict) and "key" in entry}


def get_json(url: str, token: str | None = None, timeout: float = 5) -> object:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def server_pid() -> int | None:
    """The pid TorchServe recorded in this TMPDIR, if that process still exists."""
    try:
        pid = int(PID_FILE.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def readiness(properties: dict[str, str], names: list[str]) -> tuple[bool, str]:
    """Whether /ping is healthy and each model has its READY workers, and what is missing."""
    keys = tokens(properties)
    inference = api_url(properties, "inference_address", "http://127.0.0.1:8080")
    management = api_url(properties, "management_address", "http://127.0.0.1:8081")
    try:
        ping = get_json(f"{inference}/ping", keys.get("inference"))
    except (OSError, ValueError) as error:
        return False, f"/ping: {error}"
    if not isinstance(ping, dict) or ping.get("status") != "Healthy":
        return False, f"/ping: {ping}"
    for name in names:
        try:
            described = get_json(f"{management}/models/{name}", keys.get("management"))
        except (OSError, ValueError) as error:
            return False, f"model {name}: {error}"
        for version in described:
            ready = sum(worker.get("status") == "READY" for worker in version.get("workers", []))
            wanted = max(1, int(version.get("minWorkers", 1)))
            if ready < wanted:
                return False, f"model {name}: {ready} of {wanted} workers READY"
    return True, "ready"


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(
    config: Path,
    model_store: Path | None,
    models: list[str],
    timeout: float,
    logs: Path,
    log_config: Path | None = DEFAULT_LOG_CONFIG,
) -> str:
    if not config.is_file():
        raise SetupError(f"TorchServe config not found: {config}")
    if log_config is not None and not log_config.is_file():
        raise SetupError(f"log4j2 config not found: {log_config}")
    properties = load_properties(str(config))
    store = model_store or Path(properties.get("model_store", "model_store"))
    wanted = models or [properties.get("load_models", "")]
    names = model_names(wanted)
    for entry in ",".join(wanted).split(","):
        mar = entry.split("=", 1)[-1].strip()
        if mar.endswith(".mar") and "://" not in mar and not (store / mar).is_file():
            raise SetupError(f"{store / mar} not found; build it first (python scripts/archive.py).")
    if server_pid() is not None:
        raise SetupError(f"TorchServe is already running (pid file {PID_FILE}); stop it first.")

    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LOG_LOCATION": str(logs), "METRICS_LOCATION": str(logs)}
    command = [
        sys.executable,
        "-m",
        "ts.model_server",
        "--start",
        "--ncs",
        "--ts-config",
        str(config),
        "--model-store",
        str(store),
    ]
    if models:
        command += ["--models", *models]
    if log_config is not None:
        command += ["--log-config", str(log_config)]
    console = logs / "console.log"
    with console.open("ab") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise ServeError(f"torchserve --start failed:\n{tail(console)}")

    deadline = time.monotonic() + timeout
    state = "starting"
    while time.monotonic() < deadline:
        ready, state = readiness(properties, names)
        if ready:
            inference = api_url(properties, "inference_address", "http://127.0.0.1:8080")
            return (
                f"TorchServe ready at {inference} serving {', '.join(names) or 'models'} (pid {server_pid()})"
            )
        if server_pid() is None:
            raise ServeError(f"TorchServe exited while starting:\n{tail(console)}")
        time.sleep(0.5)
    stop()
    log = Path(env["LOG_LOCATION"]) / "ts_log.log"
    raise ServeError(f"TorchServe not ready after {timeout:.0f}s ({state}); stopped it.\n{tail(log)}")


def stop() -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ts.model_server", "--stop", "--foreground"],
        capture_output=True,
        text=True,
    )
    message = (result.stdout + result.stderr).strip()
    return message or "TorchServe has stopped."


def status(config: Path) -> tuple[bool, str]:
    properties = load_properties(str(config))
    return readiness(properties, model_names([properties.get("load_models", "")]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--model-store", type=Path, help="default: model_store from the config")
    parser.add_argument("--models", nargs="*", default=[], help="e.g. digit=digit.mar (default: load_models)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for readiness")
    parser.add_argument("--logs", type=Path, default=DEFAULT_LOGS, help="LOG_LOCATION for TorchServe")
    parser.add_argument(
        "--log-config",
        default=str(DEFAULT_LOG_CONFIG),
        help="log4j2.xml for the frontend (default: the project's; 'torchserve': TorchServe's own)",
    )
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            log_config = None if args.log_config == "torchserve" else Path(args.log_config)
            print(start(args.config, args.model_store, args.models, args.timeout, args.logs, log_config))
        elif args.action == "stop":
            print(stop())
        else:
            ready, state = status(args.config)
            print(state)
            return 0 if ready else 1
    except ServeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, SetupError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
