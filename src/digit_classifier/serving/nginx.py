"""nginx (Debian's package) in front of TorchServe replicas, run unprivileged from one folder.

The folder is nginx's prefix: ``nginx.conf`` (``configs/nginx/nginx.conf`` filled in by
:func:`render_config`), ``nginx.pid``, ``logs/`` and ``temp/``. nginx starts as its own
daemon (``nginx -p <folder> -c nginx.conf``) and stops with ``nginx -s quit``, which lets
the requests in flight finish.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from digit_classifier import processes
from digit_classifier.checkout import CONFIGS
from digit_classifier.serving.templates import fill
from digit_classifier.serving.torchserve import ServeError, SetupError
from digit_classifier.web.server import (
    API_METHODS,
    CONTENT_TYPES,
    CORS_HEADERS,
    DEFAULT_MAX_BODY_BYTES,
    SECURITY_HEADERS,
    STATIC_DIR,
)

NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")
TEMPLATE = CONFIGS / "nginx" / "nginx.conf"
ERROR_PAGES = "\n".join(
    f"error_page {status} @{name};"
    for status, name in (
        (413, "too_large"),
        (502, "bad_gateway"),
        (503, "unavailable"),
        (504, "gateway_timeout"),
    )
)


@dataclass(frozen=True)
class Settings:
    """What the template leaves open. ``read_timeout`` is nginx's ``proxy_read_timeout``."""

    listen: str
    upstreams: tuple[str, ...]
    model: str = "digit"
    static_dir: Path = STATIC_DIR
    cors_origins: tuple[str, ...] = ("*",)
    read_timeout: str = "2s"
    fail_timeout: str = "5s"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def _error(status: HTTPStatus, message: str) -> str:
    """A JSON refusal in the handler's shape, as an nginx string (it may hold nginx variables)."""
    return json.dumps({"error": message, "status": int(status)}).replace("'", "\\'")


def _headers(headers: dict[str, str]) -> str:
    return "\n".join(f'add_header {name} "{value}" always;' for name, value in headers.items())


def _cors(settings: Settings) -> tuple[str, str]:
    """The ``map`` from Origin to the allowed origin, and the headers every API answer carries."""
    if "*" in settings.cors_origins:
        origins = 'default "*";'
        headers = {"Access-Control-Allow-Origin": "$cors_origin", **CORS_HEADERS}
    else:
        allowed = [f'"{origin}" "{origin}";' for origin in settings.cors_origins]
        origins = "\n".join(['default "";', *allowed])
        headers = {"Access-Control-Allow-Origin": "$cors_origin", **CORS_HEADERS, "Vary": "Origin"}
    return origins, _headers(headers)


def _types() -> tuple[str, str]:
    """The page server's content types as an nginx ``types`` block, and those sent with a charset
    (``text/html`` always is)."""
    mime = {suffix[1:]: content_type.split(";")[0] for suffix, content_type in CONTENT_TYPES.items()}
    block = "\n".join(f"{name} {suffix};" for suffix, name in mime.items())
    with_charset = {mime[suffix[1:]] for suffix, value in CONTENT_TYPES.items() if "charset" in value}
    return block, " ".join(sorted(with_charset - {"text/html"}))


def _user() -> str:
    """nginx started by root hands its workers to ``nobody``; ours run as the user starting it."""
    if os.geteuid() != 0:
        return ""
    return f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};"


def render_config(settings: Settings) -> str:
    origins, cors_headers = _cors(settings)
    types, charset_types = _types()
    too_large = f"Upload too large: $content_length bytes, limit {settings.max_body_bytes} bytes."
    servers = [
        f"server {address} max_fails=1 fail_timeout={settings.fail_timeout};"
        for address in settings.upstreams
    ]
    servers += [f"server {address} backup max_fails=0;" for address in settings.upstreams]
    return fill(
        TEMPLATE,
        {
            "user": _user(),
            "types": types,
            "charset_types": charset_types,
            "servers": "\n".join(servers),
            "cors_origins": origins,
            "cors_headers": cors_headers,
            "security_headers": _headers({**SECURITY_HEADERS, "Cache-Control": "no-cache"}),
            "error_pages": ERROR_PAGES,
            "listen": settings.listen,
            "static_dir": settings.static_dir,
            "max_body_bytes": settings.max_body_bytes,
            "read_timeout": settings.read_timeout,
            "tries": len(servers),
            "model": settings.model,
            "error_405": _error(HTTPStatus.METHOD_NOT_ALLOWED, f"Method not allowed; use {API_METHODS}."),
            "error_413": _error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large),
            "error_502": _error(HTTPStatus.BAD_GATEWAY, "No model server answered: every replica failed."),
            "error_503": _error(HTTPStatus.SERVICE_UNAVAILABLE, "No model server is available."),
            "error_504": _error(HTTPStatus.GATEWAY_TIMEOUT, "No model server answered in time."),
        },
    )


@dataclass
class Nginx:
    """One nginx whose prefix is ``folder``."""

    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.folder / "nginx.pid"

    @property
    def listen(self) -> str:
        """The address in ``nginx.conf``'s ``listen`` directive."""
        try:
            found = re.search(r"^\s*listen\s+(\S+?);", self.config.read_text(), re.MULTILINE)
        except OSError:
            found = None
        if found is None:
            raise SetupError(f"no listen directive in {self.config}")
        return found.group(1)

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    def pid(self) -> int | None:
        return processes.running(self.pid_file)

    def command(self, *extra: str) -> list[str]:
        return [
            str(NGINX),
            "-p",
            str(self.folder),
            "-c",
            "nginx.conf",
            "-e",
            str(self.folder / "logs" / "error.log"),
            *extra,
        ]

    def write_config(self, settings: Settings) -> None:
        for folder in ("logs", "temp"):
            (self.folder / folder).mkdir(parents=True, exist_ok=True)
        self.config.write_text(render_config(settings))

    def start(self, timeout: float = 10) -> int:
        """Check the config (``nginx -t``), start nginx, return its master's pid once it listens."""
        if not NGINX.is_file():
            raise SetupError(f"nginx not found at {NGINX} (apt-get install nginx)")
        if self.pid() is not None:
            raise SetupError(f"nginx is already running (pid file {self.pid_file}); stop it first.")
        for command in (self.command("-t", "-q"), self.command()):
            result = subprocess.run(command, capture_output=True, text=True, timeout=30)
            if result.returncode != 0:
                raise ServeError(f"{' '.join(command)} failed:\n{result.stderr.strip()}")
        host, port = self.listen.rsplit(":", 1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pid()
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            if pid is not None:
                return pid
        raise ServeError(
            f"nginx did not listen on {self.listen} within {timeout:.0f}s; see {self.folder / 'logs'}"
        )

    def stop(self, timeout: float = 10) -> bool:
        """``nginx -s quit`` (requests in flight finish), SIGTERM after ``timeout``; False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        subprocess.run(self.command("-s", "quit"), capture_output=True, timeout=30)
        if not processes.wait_gone(pid, timeout):
            os.kill(pid, signal.SIGTERM)
            processes.wait_gone(pid, timeout)
        return True
