"""The page server as a background process, for ``make serve`` and ``make demo``.

``start`` launches ``python -m digit_classifier.web`` detached, records its pid, and returns
once the page answers; ``stop`` ends the process that pid file names.
"""

from __future__ import annotations

import sys
from pathlib import Path

from digit_classifier import processes
from digit_classifier.processes import running, stop

__all__ = ["running", "start", "stop"]


def start(port: int, torchserve_url: str, pid_file: Path, log_file: Path, timeout: float = 15) -> str:
    """Start the page server on ``127.0.0.1:port``; returns its URL once it answers."""
    command = [sys.executable, "-m", "digit_classifier.web", "--port", str(port)]
    command += ["--torchserve-url", torchserve_url, "--quiet"]
    url = f"http://127.0.0.1:{port}/"
    processes.start(command, pid_file, log_file, lambda: processes.answers(url), "The page server", timeout)
    return url
