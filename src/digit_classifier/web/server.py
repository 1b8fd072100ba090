"""The drawing page and its API: the static files of ``static/`` and ``POST /api/digit``.

    python -m digit_classifier.web [--port 8000] [--torchserve-url http://127.0.0.1:8080]

``POST /api/digit`` keeps the seed app's contract (multipart field ``file`` holding a PNG,
answer ``{"prediction", "percentages"}``) by passing the request body, unchanged and with
its ``Content-Type``, to TorchServe's ``/predictions/<model>`` and relaying the status and
JSON body that come back. Only the standard library is used: the page is static and each
request is one call through to TorchServe, which does the decoding and the inference.

Pages of other origins may call ``/api/digit`` (CORS): its answers carry
``Access-Control-Allow-Origin`` for the allowed origins (``--cors-origins``, ``*`` by default,
as the seed app's Flask-CORS did: predictions carry no credentials), and ``OPTIONS``
preflights are answered.
"""

from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import os
import sys
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

STATIC_DIR = Path(str(resources.files("digit_classifier.web").joinpath("static")))
"""The page's HTML, CSS and JavaScript: package data of ``digit_classifier.web``."""
DEFAULT_PORT = 8000
DEFAULT_TORCHSERVE_URL = "http://127.0.0.1:8080"
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
"""Same as TorchServe's ``max_request_size``: a 5 MiB PNG plus room for multipart framing."""

API_PATH = "/api/digit"
MAX_DISCARD_BYTES = 64 * 1024 * 1024
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}
API_METHODS = "OPTIONS, POST"
CORS_HEADERS = {
    "Access-Control-Allow-Methods": API_METHODS,
    "Access-Control-Allow-Headers": "Content-Type",
    "Access-Control-Max-Age": "86400",
}
"""Sent with every ``/api/digit`` answer beside ``Access-Control-Allow-Origin``: a page of an
allowed origin may post an image with any content type and read the answer."""
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True)
class Settings:
    web_dir: Path = STATIC_DIR
    torchserve_url: str = DEFAULT_TORCHSERVE_URL
    model: str = "digit"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timeout: float = 30.0
    token: str | None = None
    """Bearer token for a TorchServe with token authorization on (its inference key)."""
    cors_origins: tuple[str, ...] = ("*",)
    """Origins whose pages may call ``/api/digit``; ``*`` for any."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"


def json_reply(status: int, message: str) -> Reply:
    """The error shape the handler uses too: ``{"error", "status"}``."""
    return Reply(status, json.dumps({"error": message, "status": status}).encode())


def forward(settings: Settings, body: bytes, content_type: str) -> Reply:
    """POST ``body`` to TorchServe's prediction endpoint; always returns a JSON reply."""
    target = urlsplit(settings.torchserve_url)
    connection_class = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(target.hostname or "127.0.0.1", target.port, timeout=settings.timeout)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "Accept": "application/json"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    path = f"{target.path.rstrip('/')}/predictions/{quote(settings.model, safe='')}"
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    except TimeoutError:
        return json_reply(
            HTTPStatus.GATEWAY_TIMEOUT,
            f"Model server did not answer within {settings.timeout:g} s ({settings.torchserve_url}).",
        )
    except (OSError, http.client.HTTPException) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return json_reply(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"Model server unavailable at {settings.torchserve_url} ({reason}). Is TorchServe running?",
        )
    finally:
        connection.close()
    return relay(response.status, response.reason, response.getheader("Content-Type", ""), answer)


def relay(status: int, reason: str, content_type: str, body: bytes) -> Reply:
    """TorchServe's JSON as is; anything else wrapped so that clients always get JSON."""
    if "json" in content_type.lower():
        try:
            json.loads(body)
        except ValueError:
            pass
        else:
            return Reply(status, body)
    if status < 400:
        return json_reply(HTTPStatus.BAD_GATEWAY, "Model server sent an answer that is not JSON.")
    text = body.decode("utf-8", "replace").strip()
    if not text or text.startswith("<"):
        text = reason or phrase(status)
    return json_reply(status, f"Model server answered {status}: {text[:500]}")


def cors_headers(origin: str | None, allowed: tuple[str, ...]) -> dict[str, str]:
    """The CORS headers of an ``/api/digit`` answer to a request from ``origin``."""
    if "*" in allowed:
        return {"Access-Control-Allow-Origin": "*", **CORS_HEADERS}
    headers = {"Vary": "Origin"}
    if origin in allowed:
        headers.update({"Access-Control-Allow-Origin": origin, **CORS_HEADERS})
    return headers


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def static_file(web_dir: Path, url_path: str) -> Path | None:
    """The file under ``web_dir`` that ``url_path`` names, or None (also for any escape)."""
    relative = unquote(url_path).lstrip("/") or "index.html"
    if "\0" in relative or "\\" in relative:
        return None
    candidate = (web_dir / relative).resolve()
    if not candidate.is_relative_to(web_dir) or not candidate.is_file():
        return None
    return candidate


class Handler(BaseHTTPRequestHandler):
    server: UIServer
    server_version = "digit-ui"
    protocol_version = "HTTP/1.1"
    timeout = 60

    def do_GET(self) -> None:
        self.serve_static(head=False)

    def do_HEAD(self) -> None:
        self.serve_static(head=True)

    def do_POST(self) -> None:
        if self.request_path != API_PATH:
            self.discard_body()
            if self.static_target() is not None:
                self.send_reply(self.not_allowed("GET, HEAD"), {"Allow": "GET, HEAD"})
            else:
                self.send_reply(json_reply(HTTPStatus.NOT_FOUND, "Not found."))
            return
        body = self.read_body()
        if isinstance(body, Reply):
            self.close_connection = True
            self.send_reply(body)
            return
        content_type = self.headers.get("Content-Type", "application/octet-stream")
        self.send_reply(forward(self.server.settings, body, content_type))

    def do_OPTIONS(self) -> None:
        """A CORS preflight on the API; any other path has no ``OPTIONS``."""
        if self.request_path != API_PATH:
            self.refuse_method()
            return
        self.discard_body()
        self.send_reply(Reply(HTTPStatus.NO_CONTENT, b""))

    def do_PUT(self) -> None:
        self.refuse_method()

    do_DELETE = do_PATCH = do_PUT

    def serve_static(self, head: bool) -> None:
        path = self.request_path
        if path == API_PATH:
            self.send_reply(self.not_allowed(API_METHODS), {"Allow": API_METHODS}, head=head)
            return
        target = self.static_target()
        if target is None:
            reply = Reply(HTTPStatus.NOT_FOUND, b"Not found.\n", "text/plain; charset=utf-8")
            self.send_reply(reply, head=head)
            return
        content_type = CONTENT_TYPES.get(target.suffix.lower()) or (
            mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        )
        self.send_reply(
            Reply(HTTPStatus.OK, target.read_bytes(), content_type), {"Cache-Control": "no-cache"}, head=head
        )

    @property
    def request_path(self) -> str:
        """The path of the request target, taken literally (``//x`` is a path, not a host)."""
        return self.path.split("?", 1)[0].split("#", 1)[0]

    def static_target(self) -> Path | None:
        return static_file(self.server.settings.web_dir, self.request_path)

    def read_body(self) -> bytes | Reply:
        """The request body, or the reply that refuses it."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return json_reply(HTTPStatus.LENGTH_REQUIRED, "Send the image with a Content-Length.")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return json_reply(HTTPStatus.LENGTH_REQUIRED, "Content-Length required.")
        limit = self.server.settings.max_body_bytes
        if length > limit:
            self.discard_body()
            return json_reply(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"Upload too large: {length} bytes, limit {limit} bytes.",
            )
        if length < 0:
            return json_reply(HTTPStatus.BAD_REQUEST, "Bad Content-Length.")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            return json_reply(HTTPStatus.REQUEST_TIMEOUT, "Timed out reading the upload.")
        if len(body) < length:
            return json_reply(HTTPStatus.BAD_REQUEST, "Upload ended early.")
        return body

    def discard_body(self) -> None:
        """Read and drop an unwanted body, then close.

        Closing a socket with unread data makes the kernel send a reset, which can
        destroy the reply (a 413, say) before the client reads it; so a body up to
        ``MAX_DISCARD_BYTES`` is read first.
        """
        self.close_connection = True
        try:
            remaining = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return
        if remaining > MAX_DISCARD_BYTES:
            return
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except OSError:
            pass

    def refuse_method(self) -> None:
        self.discard_body()
        allowed = API_METHODS if self.request_path == API_PATH else "GET, HEAD"
        self.send_reply(self.not_allowed(allowed), {"Allow": allowed})

    @staticmethod
    def not_allowed(allowed: str) -> Reply:
        return json_reply(HTTPStatus.METHOD_NOT_ALLOWED, f"Method not allowed; use {allowed}.")

    def send_reply(self, reply: Reply, headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(reply.status)
        if reply.status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        headers = {**SECURITY_HEADERS, **(headers or {})}
        if self.request_path == API_PATH:
            headers.update(cors_headers(self.headers.get("Origin"), self.server.settings.cors_origins))
        for name, value in headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head:
            self.wfile.write(reply.body)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            super().log_message(format, *args)


class UIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: Settings, quiet: bool = False) -> None:
        super().__init__(address, Handler)
        self.settings = settings
        self.quiet = quiet

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(
    settings: Settings, host: str = "127.0.0.1", port: int = DEFAULT_PORT, quiet: bool = False
) -> UIServer:
    """A bound server (``port=0`` picks a free one); call ``serve_forever`` to run it."""
    web_dir = settings.web_dir.resolve()
    if not (web_dir / "index.html").is_file():
        raise FileNotFoundError(f"{web_dir / 'index.html'} not found; pass --web-dir.")
    return UIServer((host, port), replace(settings, web_dir=web_dir), quiet)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default=env.get("DIGIT_UI_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("DIGIT_UI_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--torchserve-url",
        default=env.get("DIGIT_TORCHSERVE_URL", DEFAULT_TORCHSERVE_URL),
        help="TorchServe's inference address",
    )
    parser.add_argument("--model", default=env.get("DIGIT_MODEL", "digit"), help="model name in TorchServe")
    parser.add_argument("--web-dir", type=Path, default=Path(env.get("DIGIT_WEB_DIR", STATIC_DIR)))
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for TorchServe")
    parser.add_argument(
        "--cors-origins",
        default=env.get("DIGIT_CORS_ORIGINS", "*"),
        help="origins whose pages may call /api/digit, comma-separated, or * (DIGIT_CORS_ORIGINS)",
    )
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)
    args.token = env.get("DIGIT_TORCHSERVE_TOKEN") or None
    return args


def parse_origins(text: str) -> tuple[str, ...]:
    """``"https://a.example, https://b.example"`` -> a tuple of origins; ``"*"`` -> ``("*",)``."""
    return tuple(origin for origin in text.replace(",", " ").split() if origin) or ("*",)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        web_dir=args.web_dir,
        torchserve_url=args.torchserve_url,
        model=args.model,
        max_body_bytes=args.max_body_bytes,
        timeout=args.timeout,
        token=args.token,
        cors_origins=parse_origins(args.cors_origins),
    )
    try:
        server = make_server(settings, args.host, args.port, args.quiet)
    except (FileNotFoundError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Digit UI at {server.url} -> {settings.torchserve_url}/predictions/{settings.model}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
