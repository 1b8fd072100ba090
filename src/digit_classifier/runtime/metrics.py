"""The handler's own metrics, added up once per batch.

A worker reports a metric to TorchServe's frontend as one log line per call, which the
frontend parses, so the handler makes one call per label value of a batch, not one per
request: usually one status, no refusal, a few digits and two timings per batch.
``configs/torchserve/metrics.yaml`` declares these names and labels; in Prometheus mode
the frontend serves them on its metrics API (``/metrics``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
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
