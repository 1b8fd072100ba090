"""The handler's own metrics: counted per batch, counters added up over many batches.

A worker reports a metric to TorchServe's frontend as one log line per call (about 30 us
of the worker's time, ``scripts/bench_metrics.py``), which the frontend then parses. So a
batch is first counted by label value (:func:`batch_samples`), and :class:`MetricBuffer`
adds the counts up over many batches and reports them once a ``flush_interval``; only the
two timings of each batch go out at once, being observations of a histogram.
``configs/torchserve/metrics.yaml`` declares these names and labels; in Prometheus mode
the frontend serves them on its metrics API (``/metrics``).
"""

from __future__ import annotations

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
PREPROCESS_MS = "digit_preprocess_milliseconds"
"""Decoding and preprocessing time of a batch."""
INFERENCE_MS = "digit_inference_milliseconds"
"""Forward-pass time of a batch."""
VERSION_LABEL = "ModelVersion"
"""Every sample is labelled with the model version, so that a rollout shows in the metrics."""


@dataclass(frozen=True)
class Sample:
    """One metric call: ``kind`` is ``counter`` (add ``value``) or ``histogram`` (observe it)."""

    name: str
    value: float
    labels: tuple[tuple[str, str], ...]
    kind: str = "counter"


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
    samples.append(Sample(PREPROCESS_MS, batch.preprocess_ms, (version_label,), "histogram"))
    if batch.positions:
        samples.append(Sample(INFERENCE_MS, batch.inference_ms, (version_label,), "histogram"))
    return samples


class MetricBuffer:
    """Adds up counter samples and hands them to ``emit`` every ``flush_interval`` seconds,
    from a daemon thread; histogram samples go to ``emit`` at once. ``emit`` is only ever
    called by one thread at a time.

    Counts reach the metrics API up to ``flush_interval`` late, and a worker that is killed
    takes at most that much of them along; ``flush_interval=0`` reports every batch at once.
    """

    def __init__(self, emit: Callable[[list[Sample]], None], flush_interval: float = 1.0) -> None:
        self._emit = emit
        self.flush_interval = flush_interval
        self._counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        if flush_interval > 0:
            threading.Thread(target=self._flush_periodically, name="digit-metrics", daemon=True).start()

    def add(self, samples: Sequence[Sample]) -> None:
        observations = [sample for sample in samples if sample.kind != "counter" or not self.flush_interval]
        with self._lock:
            if self.flush_interval:
                for sample in samples:
                    if sample.kind == "counter":
                        self._counts[sample.name, sample.labels] += sample.value
            if observations:
                self._emit(observations)

    def flush(self) -> None:
        """Report the counts added since the last flush."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
            if counts:
                self._emit([Sample(name, value, labels) for (name, labels), value in counts.items()])

    def close(self) -> None:
        """Stop the flushing thread and report what is left."""
        self._closed.set()
        self.flush()

    def _flush_periodically(self) -> None:
        while not self._closed.wait(self.flush_interval):
            self.flush()
