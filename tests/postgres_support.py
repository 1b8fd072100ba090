"""A throwaway PostgreSQL server for tests: ``initdb`` into a temporary folder, one loopback port.

PostgreSQL refuses to run as root, so under root (as in CI here) the server runs as
``nobody``, in a folder that user owns; under any other user it runs as that user. Tests
skip, saying why, only where no server can start: no PostgreSQL binaries (Debian's
``postgresql`` package puts them in ``/usr/lib/postgresql/<version>/bin``), no psycopg, or
``initdb`` or the server failing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from digit_classifier.serving.torchserve import free_ports

SUPERUSER = "postgres"


@dataclass(frozen=True)
class Postgres:
    port: int
    password: str
    host: str = "127.0.0.1"

    def execute(self, *statements: str) -> None:
        """Run SQL as the superuser, each statement on its own (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=SUPERUSER, password=self.password, autocommit=True
        ) as connection:
            for statement in statements:
                connection.execute(statement)


def _bin_dir() -> Path | None:
    """The newest Debian PostgreSQL, else the one on PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _server_user() -> dict[str, Any]:
    """``subprocess`` arguments that run the server as an unprivileged user."""
    if os.geteuid() != 0:
        return {}
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("running as root, and there is no 'nobody' user to run PostgreSQL as")
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


def _run(command: list[str], folder: Path, user: dict[str, Any], what: str) -> None:
    result = subprocess.run(
        command, cwd=folder, capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, **user
    )
    if result.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        pytest.skip(f"{what} failed ({result.returncode}): {result.stderr[-2000:]}{tail}")


def _initdb(bin_dir: Path, folder: Path, server: Postgres, user: dict[str, Any]) -> None:
    """A new cluster in ``folder/data``, owned by the server's user, with a password login."""
    (folder / "password").write_text(server.password + "\n")
    if user:
        for path in (folder, folder / "password"):
            os.chown(path, user["user"], user["group"])
    command = [str(bin_dir / "initdb"), "--pgdata=data", f"--username={SUPERUSER}", "--pwfile=password"]
    command += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-instructions"]
    _run(command, folder, user, "initdb")


@contextmanager
def local_postgres() -> Iterator[Postgres]:
    """A PostgreSQL server on a free loopback port, stopped and deleted afterwards."""
    pytest.importorskip("psycopg", reason="needs psycopg: pip install -e '.[postgres]'")
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    user = _server_user()
    # Not pytest's tmp_path: under root that is private to root, and the server runs as nobody.
    folder = Path(tempfile.mkdtemp(prefix="digit-postgres-"))
    server = Postgres(port=free_ports(1)[0], password=os.urandom(12).hex())
    pg_ctl = [str(bin_dir / "pg_ctl"), "--pgdata=data"]
    try:
        _initdb(bin_dir, folder, server, user)
        options = f"-c listen_addresses={server.host} -p {server.port} -c unix_socket_directories=''"
        _run([*pg_ctl, "--log=server.log", "--wait", "-o", options, "start"], folder, user, "PostgreSQL")
        yield server
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "--mode=immediate", "stop"], cwd=folder, capture_output=True, **user)
        shutil.rmtree(folder, ignore_errors=True)
