"""Background processes that outlive the command starting them, recorded in a pid file.

The page server, Prometheus and (through its own pid file) nginx are started detached
(``make serve``, ``make serve-cluster``), found again by their pid file, and stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """While inside, SIGTERM exits through ``SystemExit`` instead of ending the process at once,
    so the ``finally`` blocks that stop the servers this process started still run (``kill``
    or a CI timeout on a benchmark would otherwise leave them serving).

    A no-op outside the main thread, or where something else already handles SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def exit_on_sigterm(signum: int, frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def answers(url: str) -> bool:
    """Whether ``url`` answers a GET with a 2xx or 3xx status."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs; reaps it first if it is an exited child of this process."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def running(pid_file: Path) -> int | None:
    """The pid recorded in ``pid_file``, if that process still runs."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def start(
    command: list[str],
    pid_file: Path,
    log_file: Path,
    ready: Callable[[], bool],
    what: str,
    timeout: float = 15,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start ``command`` detached, output to ``log_file``; returns its pid once ``ready()``."""
    if running(pid_file):
        raise RuntimeError(f"{what} is already running (pid file {pid_file}).")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
    pid_file.write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pid_file.unlink(missing_ok=True)
            raise RuntimeError(f"{what} exited with {process.returncode}; see {log_file}.")
        if ready():
            return process.pid
        time.sleep(0.1)
    stop(pid_file)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f}s; see {log_file}.")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid_file: Path, timeout: float = 10) -> bool:
    """SIGTERM the recorded process, SIGKILL it after ``timeout``; False when none was running."""
    pid = running(pid_file)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, timeout):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return True
