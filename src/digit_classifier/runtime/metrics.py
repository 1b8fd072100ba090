"""The handler's own metrics: counted per batch, added up over many batches.

A worker reports a metric to TorchServe's frontend as one log line per call, which the
frontend's thread then reads and parses while the worker waits on the pipe: a profile of
a live worker charged about 4% of its time to each line a batch wrote
(``scripts/profile_worker.py``). So every metric here is a counter, timings included (total
milliseconds, next to the number of batches, as TorchServe's own
``ts_inference_latency_microseconds``): :func:`batch_samples` counts a batch by label value,
and :class:`MetricBuffer` adds the counts up and reports them once a ``flush_interval``,
a few lines a second however many batches run.
``configs/torchserve/metrics.yaml`` declares these names and labels; in Prometheus mode
the frontend serves them on its metrics API (``/metrics``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from digit_classifier.runtime.inference import PreparedBatch

REQUESTS = "digit_requests_total"
"""Requests answered, by HTTP ``status``."""
REFUSED = "digit_refused_images_total"
"""Images refused, by ``reason`` (``ImageInputError.reason``)."""
PREDICTIONS = "digit_predictions_total"
"""Answers, by predicted ``digit``."""
BATCHES = "digit_batches_total"
"""Batches handled."""
PREPROCESS_MS = "digit_preprocess_milliseconds_total"
"""Time spent decoding and preprocessing, over all batches."""
INFERENCE_MS = "digit_inference_milliseconds_total"
"""Time spent in the forward pass, over the batches that had an image to classify."""
VERSION_LABEL = "ModelVersion"
"""Every sample is labelled with the model version, so that a rollout shows in the metrics."""

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """An amount to add to the counter ``name`` with these ``labels``, in ``unit``."""

    name: str
    value: float
    labels: Labels
    unit: str = "count"


def batch_samples(batch: PreparedBatch, responses: Sequence[Mapping[str, Any]], version: str) -> list[Sample]:
    """The samples for one answered batch: counts by status, reason and digit, and its timings."""
    statuses = Counter(error.status for error in batch.errors.values())
    if batch.positions:
        statuses[int(HTTPStatus.OK)] += len(batch.positions)
    reasons = Counter(error.reason for error in batch.errors.values())
    digits = Counter(response["prediction"] for response in responses if "prediction" in response)
    version_label = (VERSION_LABEL, version)
    samples = [
        Sample(REQUESTS, count, (("status", str(status)), version_label))
        for status, count in statuses.items()
    ]
    samples += [
        Sample(REFUSED, count, (("reason", reason), version_label)) for reason, count in reasons.items()
    ]
    samples += [
        Sample(PREDICTIONS, count, (("digit", str(digit)), version_label)) for digit, count in digits.items()
    ]
    samples.append(Sample(BATCHES, 1, (version_label,)))
    samples.append(Sample(PREPROCESS_MS, batch.preprocess_ms, (version_label,), "ms"))
    if batch.positions:
        samples.append(Sample(INFERENCE_MS, batch.inference_ms, (version_label,), "ms"))
    return samples


class MetricBuffer:
    """Adds samples up and hands the sums to ``emit`` every ``flush_interval`` seconds, from a
    daemon thread; ``emit`` is only ever called by one thread at a time.

    Counts reach the metrics API up to ``flush_interval`` late, and a worker that is killed
    takes at most that much of them along; ``flush_interval=0`` reports every batch at once.
    """

    def __init__(self, emit: Callable[[list[Sample]], None], flush_interval: float = 1.0) -> None:
        self._emit = emit
        self.flush_interval = flush_interval
        self._sums: Counter[tuple[str, Labels, str]] = Counter()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if flush_interval > 0:
            threading.Thread(target=self._flush_periodically, name="digit-metrics", daemon=True).start()

    def add(self, samples: Sequence[Sample]) -> None:
        with self._lock:
            for sample in samples:
                self._sums[sample.name, sample.labels, sample.unit] += sample.value
        if not self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Report what was added since the last flush."""
        with self._lock:
            sums, self._sums = self._sums, Counter()
            samples = [Sample(name, value, labels, unit) for (name, labels, unit), value in sums.items()]
            if samples:
                self._emit(samples)

    def close(self) -> None:
        """Stop the flushing thread and report what is left."""
        self._closed.set()
        self.flush()

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.flush_interval):
            self.flush()


BATCH_LOG_LINES = {
    "": "Backend received inference at: %d",
    "ts.metrics.caching_metric": "[METRICS]PredictionTime.",
}
"""The two lines TorchServe's worker writes for every batch, by the logger that writes them
(its ``PredictionTime`` gauge, and a timestamp the frontend copies to ``model_log.log``)."""


def drop_batch_log_lines() -> None:
    """Keep TorchServe's worker from writing :data:`BATCH_LOG_LINES` (the frontend parses
    neither: ``digit_*_milliseconds_total`` time the handler, and the frontend times
    requests itself), so that a batch writes nothing to the pipe the frontend reads.

    Each line wakes the frontend's reader thread, which on two cores preempts the worker:
    with the handler's own lines gone, a live worker's profile still charged a tenth of its
    time to writing these two (``scripts/profile_worker.py``). TorchServe has no setting for
    them, hence a filter on each logger.
    """
    for name, start in BATCH_LOG_LINES.items():
        logger = logging.getLogger(name)
        if not any(getattr(existing, "drops", None) == start for existing in logger.filters):
            logger.addFilter(_DropLines(start))


class _DropLines(logging.Filter):
    def __init__(self, start: str) -> None:
        super().__init__()
        self.drops = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(self.drops))
