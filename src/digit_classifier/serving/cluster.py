"""TorchServe replicas behind nginx on one machine: start them, find them again, stop them.

A cluster is a folder (``logs/cluster`` for ``make serve-cluster``), and the folder is its
state, so ``Cluster.load`` finds a running cluster from any command:

    replica-1/ ... replica-N/   each a TorchServe home (:class:`TorchServe`): config.properties
                                on its own free loopback ports, tmp/ (TMPDIR, pid file), logs/
    nginx/                      nginx's prefix (:mod:`digit_classifier.serving.nginx`)
    prometheus.yml              the scrape config for the replicas' metrics APIs
    prometheus/                 a Prometheus server, when one was started
    deployments.json            what ``scripts/deploy.py`` rolled out (:class:`deploy.History`)

Every replica serves the same model store and the same models, so nginx may send any
request to any of them; ``scripts/deploy.py`` rolls a new version out one replica at a time.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from digit_classifier.processes import sigterm_unwinds
from digit_classifier.serving import monitoring, nginx
from digit_classifier.serving.torchserve import (
    DEFAULT_CONFIG,
    ServeError,
    SetupError,
    TorchServe,
    derive_config,
    free_ports,
)

DEFAULT_ROOT = Path("logs") / "cluster"
DEFAULT_LISTEN = "127.0.0.1:8090"
REPLICA_PREFIX = "replica-"


def replica(home: Path) -> TorchServe:
    """The TorchServe of a replica folder (its config, logs and TMPDIR inside it)."""
    return TorchServe(home, Path("config.properties"), Path("logs"), tmp=home / "tmp")


@dataclass
class Cluster:
    root: Path
    replicas: list[TorchServe] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path) -> Cluster:
        """The cluster whose folder is ``root`` (running or not)."""
        root = root.resolve()
        homes = sorted(
            root.glob(f"{REPLICA_PREFIX}*"), key=lambda home: int(home.name.removeprefix(REPLICA_PREFIX))
        )
        return cls(root, [replica(home) for home in homes if (home / "config.properties").is_file()])

    @property
    def nginx(self) -> nginx.Nginx:
        return nginx.Nginx(self.root / "nginx")

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def history(self) -> Path:
        return self.root / "deployments.json"

    @property
    def prometheus_config(self) -> Path:
        return self.root / "prometheus.yml"

    def prometheus(self, listen: str = monitoring.DEFAULT_LISTEN) -> monitoring.Prometheus:
        """A Prometheus scraping the replicas, in the cluster folder."""
        return monitoring.Prometheus(self.root / "prometheus", self.prometheus_config, listen)

    def running(self) -> bool:
        return self.nginx.pid() is not None or any(server.pid() is not None for server in self.replicas)

    def start_replicas(self, models: list[str] | None = None, timeout: float = 180) -> None:
        """Start every replica at once (they load in parallel); return once all are ready, or
        stop them all and raise."""
        names = self.replicas[0].loaded_model_names(models or [])
        try:
            for server in self.replicas:
                server.launch(models)
            with ThreadPoolExecutor(len(self.replicas)) as pool:
                list(pool.map(lambda server: server.wait_until_ready(names, timeout), self.replicas))
        except ServeError:
            self.stop()
            raise

    def stop(self) -> list[str]:
        """Stop nginx, Prometheus and every replica; what was stopped, one line each."""
        stopped = []
        if self.nginx.stop():
            stopped.append("nginx stopped")
        if self.prometheus().stop():
            stopped.append("Prometheus stopped")
        running = [server for server in self.replicas if server.pid() is not None]
        with ThreadPoolExecutor(max(1, len(running))) as pool:
            list(pool.map(TorchServe.stop, running))
        stopped += [f"replica {server.home.name} stopped" for server in running]
        return stopped

    def describe(self) -> list[str]:
        """A line per replica (its addresses and frontend pid) and one for nginx."""
        if not self.replicas:
            return [f"No cluster in {self.root}."]
        lines = []
        for server in self.replicas:
            lines.append(
                f"{server.home.name}: inference {server.inference_url}, management {server.management_url}, "
                f"metrics {server.metrics_url}, pid {server.pid()}"
            )
        if not self.nginx.config.is_file():
            return [*lines, "nginx: not started"]
        lines.append(f"nginx: {self.url}/ (pid {self.nginx.pid()}), logs in {self.nginx.folder / 'logs'}")
        return lines


def start_cluster(
    root: Path,
    model_store: Path,
    count: int = 2,
    listen: str = DEFAULT_LISTEN,
    source_config: Path = DEFAULT_CONFIG,
    overrides: Mapping[str, str] | None = None,
    models: list[str] | None = None,
    cors_origins: tuple[str, ...] = ("*",),
    timeout: float = 180,
) -> Cluster:
    """``count`` replicas of ``source_config`` on free loopback ports, and nginx on ``listen``."""
    root = root.resolve()
    existing = Cluster.load(root)
    if existing.running():
        raise SetupError(f"a cluster is running in {root}; stop it first (python scripts/cluster.py stop)")
    for home in root.glob(f"{REPLICA_PREFIX}*"):
        shutil.rmtree(home / "tmp", ignore_errors=True)
        if int(home.name.removeprefix(REPLICA_PREFIX)) > count:
            shutil.rmtree(home)
    cluster = Cluster(root, [replica(root / f"{REPLICA_PREFIX}{number}") for number in range(1, count + 1)])
    for server in cluster.replicas:
        derive_config(source_config, server.home / "config.properties", model_store.resolve(), overrides)
    cluster.start_replicas(models, timeout)
    cluster.prometheus_config.write_text(monitoring.render_config(cluster.replicas))
    upstreams = tuple(urlsplit(server.inference_url).netloc for server in cluster.replicas)
    cluster.nginx.write_config(nginx.Settings(listen, upstreams, cors_origins=cors_origins))
    try:
        cluster.nginx.start()
    except ServeError:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def private_cluster(root: Path, model_store: Path, count: int = 2, **options: object) -> Iterator[Cluster]:
    """A cluster with nginx on a free loopback port (tests, benchmarks); stopped after, also
    when this process gets SIGTERM."""
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    with sigterm_unwinds():
        cluster = start_cluster(root, model_store, count, listen, **options)
        try:
            yield cluster
        finally:
            cluster.stop()
