"""The page server as a background process, for ``make serve`` and ``make demo``.

``start`` launches ``python -m digit_classifier.web`` detached, records its pid, and returns
once the page answers; ``stop`` ends the process that pid file names.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def start(port: int, torchserve_url: str, pid_file: Path, log_file: Path, timeout: float = 15) -> str:
    """Start the page server on ``127.0.0.1:port``; returns its URL once it answers."""
    if running(pid_file):
        raise RuntimeError(f"The page server is already running (pid file {pid_file}).")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "digit_classifier.web", "--port", str(port)]
    command += ["--torchserve-url", torchserve_url, "--quiet"]
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    pid_file.write_text(f"{process.pid}\n")
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise RuntimeError(f"The page server exited with {process.returncode}; see {log_file}.")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return url
        time.sleep(0.1)
    stop(pid_file)
    raise RuntimeError(f"The page server did not answer at {url} within {timeout:.0f}s; see {log_file}.")


def running(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def stop(pid_file: Path) -> bool:
    """Stop the recorded page server; False when none was running."""
    pid = running(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    return True
