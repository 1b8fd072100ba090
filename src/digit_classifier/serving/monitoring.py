"""Prometheus (Debian's package) scraping TorchServe replicas' metrics APIs.

``configs/prometheus/prometheus.yml`` filled in with the replicas' metrics addresses
(:func:`render_config`); :class:`Prometheus` runs the server detached, with its data in
its own folder, and queries its HTTP API.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from digit_classifier import processes
from digit_classifier.checkout import CONFIGS
from digit_classifier.serving.templates import fill
from digit_classifier.serving.torchserve import SetupError, TorchServe, call_json

PROMETHEUS = Path(shutil.which("prometheus") or "/usr/bin/prometheus")
TEMPLATE = CONFIGS / "prometheus" / "prometheus.yml"
DEFAULT_LISTEN = "127.0.0.1:9090"


def render_config(replicas: list[TorchServe], scrape_interval: str = "5s") -> str:
    """The scrape config for ``replicas``' metrics APIs (``host:port`` from each config)."""
    targets = [urlsplit(replica.metrics_url).netloc for replica in replicas]
    values = {
        "scrape_interval": scrape_interval,
        "scrape_timeout": scrape_interval,
        "targets": json.dumps(targets),
    }
    return fill(TEMPLATE, values)


@dataclass
class Prometheus:
    """A Prometheus server with ``config``, its data, log and pid file in ``folder``."""

    folder: Path
    config: Path
    listen: str = DEFAULT_LISTEN

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    @property
    def pid_file(self) -> Path:
        return self.folder / "prometheus.pid"

    def start(self, timeout: float = 60) -> int:
        """Start it detached; returns its pid once ``/-/ready`` answers."""
        if not PROMETHEUS.is_file():
            raise SetupError(f"prometheus not found at {PROMETHEUS} (apt-get install prometheus)")
        command = [
            str(PROMETHEUS),
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.folder / 'data'}",
            f"--web.listen-address={self.listen}",
        ]
        ready = f"{self.url}/-/ready"
        log = self.folder / "prometheus.log"
        return processes.start(
            command, self.pid_file, log, lambda: processes.answers(ready), "Prometheus", timeout
        )

    def stop(self) -> bool:
        return processes.stop(self.pid_file)

    def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query (``/api/v1/query``): the result vector, one entry per series."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
        answer = call_json("GET", url, timeout=10)
        return answer["data"]["result"]
