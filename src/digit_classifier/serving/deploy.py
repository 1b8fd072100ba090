"""Roll a model version out onto running TorchServes with no failed request, one server at a time.

On each server, with TorchServe's management API:

1. register the ``.mar`` (``POST /models?url=<file>&synchronous=true``): a new version with
   its workers, beside the one serving;
2. wait until the new version answers a prediction (``POST /predictions/<model>/<version>``);
3. make it the default (``PUT /models/<model>/<version>/set-default``): from then on
   ``/predictions/<model>`` goes to it;
4. wait until the old version's queue is empty, then a little longer for the batches its
   workers hold (:func:`drain`);
5. unregister the old version (``DELETE /models/<model>/<version>``).

Step 4 matters: TorchServe 0.12 puts the requests an unregistered version still held back
into that version's queue, where no worker will ever take them. The version comes from the
archive's manifest (TorchServe reads it there; registering takes no version). The file is
named by its plain name, which TorchServe looks up in its own model store: a URL would go
through ``allowed_urls``, and TorchServe deletes a downloaded ``.mar`` when it unregisters it.

:class:`History` records what was rolled out, so that ``rollback`` can bring the previous
version back the same way.
"""

from __future__ import annotations

import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from digit_classifier.serving.torchserve import ServeError, TorchServe, call_json, read_manifest

DRAIN_GRACE_S = 2.0
"""After the old version's queue is empty: time for the batches its workers hold (milliseconds each)."""


class DeployError(Exception):
    """A rollout that cannot go on; the servers already done keep the new version."""


@dataclass(frozen=True)
class Archive:
    """A ``.mar`` in a server's model store, and the model name and version its manifest gives."""

    path: Path
    name: str
    version: str

    @classmethod
    def read(cls, path: Path) -> Archive:
        try:
            model = read_manifest(path)["model"]
            return cls(path, model["modelName"], str(model["modelVersion"]))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise DeployError(f"{path} is not a model archive with a name and version: {error}") from None


def versions(server: TorchServe, name: str) -> dict[str, dict]:
    """The registered versions of model ``name``: version -> TorchServe's description."""
    described = server.management("GET", f"/models/{name}/all")
    return {str(entry["modelVersion"]): entry for entry in described}


def default_version(server: TorchServe, name: str) -> dict:
    (described,) = server.management("GET", f"/models/{name}")
    return described


def check_store(servers: Sequence[TorchServe], archive: Archive) -> None:
    """Every server must find the archive in its own model store, by its file name."""
    for server in servers:
        if server.store.resolve() != archive.path.parent.resolve():
            raise DeployError(
                f"{archive.path} is not in the model store of {server.management_url} ({server.store})"
            )


def register(server: TorchServe, archive: Archive) -> None:
    """Register the archive with its workers started; TorchServe takes the worker count from the
    archive's model config, and ``initial_workers`` only when that has none."""
    server.management(
        "POST", "/models", timeout=300, url=archive.path.name, initial_workers=1, synchronous="true"
    )


def wait_answering(server: TorchServe, archive: Archive, probe: bytes, timeout: float = 60) -> None:
    """Until the archive's own version answers ``probe`` (a PNG) with 200."""
    url = server.predict_url(archive.name, archive.version)
    deadline = time.monotonic() + timeout
    while True:
        try:
            call_json("POST", url, server.tokens().get("inference"), probe, "image/png")
            return
        except ServeError as error:
            if time.monotonic() > deadline:
                raise DeployError(f"version {archive.version} does not answer: {error}") from None
        time.sleep(0.5)


def drain(
    server: TorchServe, name: str, version: str, grace: float = DRAIN_GRACE_S, timeout: float = 60
) -> None:
    """Wait until no request waits for ``version``, then ``grace`` seconds for those its workers hold.

    TorchServe reports the queue (``jobQueueStatus.pendingRequests``) but not the batches in
    its workers, which take milliseconds; the grace covers them.
    """
    deadline = time.monotonic() + timeout
    while versions(server, name)[version]["jobQueueStatus"]["pendingRequests"] > 0:
        if time.monotonic() > deadline:
            raise DeployError(f"version {version} still has queued requests after {timeout:.0f}s")
        time.sleep(0.2)
    time.sleep(grace)


def roll_out(server: TorchServe, archive: Archive, probe: bytes, grace: float = DRAIN_GRACE_S) -> list[str]:
    """Make ``archive`` the only version of its model on ``server``; returns the versions it replaced."""
    loaded = versions(server, archive.name)
    if archive.version not in loaded:
        register(server, archive)
    wait_answering(server, archive, probe)
    server.management("PUT", f"/models/{archive.name}/{archive.version}/set-default")
    replaced = [version for version in loaded if version != archive.version]
    for version in replaced:
        drain(server, archive.name, version, grace)
        server.management("DELETE", f"/models/{archive.name}/{version}", timeout=120)
    return replaced


def roll_out_all(
    servers: Sequence[TorchServe],
    archive: Archive,
    probe: bytes,
    grace: float = DRAIN_GRACE_S,
    report: Callable[[str], None] = print,
) -> None:
    """:func:`roll_out` on each server in turn: the others keep serving meanwhile."""
    check_store(servers, archive)
    for number, server in enumerate(servers, 1):
        try:
            replaced = roll_out(server, archive, probe, grace)
        except ServeError as error:
            raise DeployError(
                f"server {number} of {len(servers)} ({server.management_url}): {error}"
            ) from None
        was = ", ".join(replaced) or "nothing else"
        report(f"{server.management_url}: {archive.name} {archive.version} serving (replaced {was})")


class History:
    """The archives rolled out to a set of servers, oldest first, in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, str]]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []

    def write(self, entries: list[dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(entries, indent=2) + "\n")

    def record(self, live: dict, archive: Archive) -> None:
        """Append ``archive``, after what was live before it if the history does not end with that;
        rolling out what was live already records nothing."""
        entries = self.entries()
        before = {"version": str(live["modelVersion"]), "file": Path(live["modelUrl"]).name}
        rolled_out = {"version": archive.version, "file": archive.path.name}
        if not entries or entries[-1] != before:
            entries.append(before)
        if rolled_out != before:
            entries.append(rolled_out)
        self.write(entries)

    def previous(self, store: Path) -> Archive:
        """The archive rolled out before the last one; it must still hold the version it had."""
        entries = self.entries()
        if len(entries) < 2:
            raise DeployError(f"nothing to roll back to: {self.path} records {len(entries)} rollout(s)")
        entry = entries[-2]
        archive = Archive.read(store / entry["file"])
        if archive.version != entry["version"]:
            raise DeployError(
                f"{archive.path} now holds version {archive.version}, not {entry['version']}: "
                "archive that model again under its own file name to roll back to it"
            )
        return archive

    def rolled_back(self) -> None:
        self.write(self.entries()[:-1])
