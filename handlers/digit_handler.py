"""TorchServe handler: PNG in, ``{"prediction", "percentages"}`` JSON out.

Each request of a batch is answered on its own: an image that cannot be decoded gets
its own HTTP status and ``{"error", "status"}`` body while the rest of the batch is
classified, so bad input never turns into TorchServe's 503 "Prediction failed".

Each batch is also counted for the handler's metrics (``digit_classifier.runtime.metrics``),
and the counts are added up and reported once a second (``metrics_flush_seconds``), so that
a batch writes no line to the pipe the frontend reads; nor do TorchServe's own two lines
per batch, unless ``torchserve_batch_logs`` is set. The worker reads each batch from the
frontend through a read-ahead buffer instead of a system call per field
(``digit_classifier.runtime.protocol``), unless ``buffered_frontend_reads`` is false.

TorchServe makes the unpacked ``.mar`` folder importable, which is how the
``digit_classifier.runtime`` package shipped next to this file is found. TorchServe also
requires this module to define exactly one class, so the batch dataclass lives in
``digit_classifier.runtime.inference``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
from ts.handler_utils.timer import timed
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes
from ts.protocol import otf_message_handler
from ts.torch_handler.base_handler import BaseHandler

import digit_classifier
from digit_classifier.runtime.inference import (
    PreparedBatch,
    batch_responses,
    batch_size_from_properties,
    handler_settings,
    limits_from_config,
    load_for_serving,
    predict_probabilities,
    prepare_batch,
    served_precision,
    set_torch_threads,
    status_phrase,
)
from digit_classifier.runtime.metrics import MetricBuffer, Sample, batch_samples, drop_batch_log_lines
from digit_classifier.runtime.preprocessing import ImageLimits
from digit_classifier.runtime.protocol import buffer_frontend_reads

logger = logging.getLogger(__name__)

PAYLOAD_FIELDS = ("file", "data", "body")
"""Where a request's image may be: multipart field ``file`` or ``data``, else the raw body."""

JSON = "application/json"


def emit(metrics: Any, samples: Iterable[Sample]) -> None:
    """Add ``samples`` to their counters in TorchServe's metric cache (``context.metrics``).

    Each call gets a fresh ``dimensions`` list: TorchServe appends its default dimensions
    (ModelName, Level) to the list it is given, and its default argument is a shared list.
    """
    for sample in samples:
        dimensions = [Dimension(name, value) for name, value in sample.labels]
        metrics.add_metric(sample.name, sample.value, sample.unit, None, dimensions, MetricTypes.COUNTER)


class DigitHandler(BaseHandler):
    """Classifies PNG digits with the exported network in the model folder."""

    def __init__(self) -> None:
        super().__init__()
        self.limits = ImageLimits()

    def initialize(self, context: Any) -> None:
        """Configure the worker, then load the network (without ``super().initialize``: the
        ``.mar`` holds weights and ``network.json``, not a pickled or scripted model)."""
        self.context = context
        self.manifest = context.manifest
        self.model_yaml_config = context.model_yaml_config or {}
        settings = handler_settings(self.model_yaml_config)
        self._configure_worker(settings, context.metrics)
        self._load(settings, context.system_properties)
        self.version = str(context.manifest.get("model", {}).get("modelVersion", ""))
        self.initialized = True

    def _configure_worker(self, settings: dict[str, Any], metrics: Any) -> None:
        """Threads, image limits, the metric buffer, and what the worker reads and logs."""
        set_torch_threads(settings)
        self.limits = limits_from_config(settings)
        flush_interval = float(settings.get("metrics_flush_seconds", 1.0))
        self.metrics = MetricBuffer(lambda samples: emit(metrics, samples), flush_interval)
        if not settings.get("torchserve_batch_logs", False):
            drop_batch_log_lines()
        self.buffered_reads = bool(settings.get("buffered_frontend_reads", True))
        if self.buffered_reads:
            buffer_frontend_reads(otf_message_handler)

    def _load(self, settings: dict[str, Any], properties: dict[str, Any]) -> None:
        gpu_id = properties.get("gpu_id")
        if torch.cuda.is_available() and gpu_id is not None:
            self.device = torch.device(f"cuda:{gpu_id}")
        else:
            self.device = torch.device("cpu")
        model_dir = Path(properties.get("model_dir"))
        batch_size = batch_size_from_properties(properties)
        self.model = load_for_serving(model_dir, settings, self.device, max_batch_size=batch_size)
        logger.info(
            "Loaded %s on %s in %s for batches up to %d with %d torch threads, %s, buffered reads %s; "
            "digit_classifier from %s",
            model_dir,
            self.device,
            served_precision(settings),
            batch_size,
            torch.get_num_threads(),
            self.limits,
            self.buffered_reads,
            Path(digit_classifier.__file__).parent,
        )

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[bytes]:
        """``BaseHandler.handle`` without what it adds per batch and we do not use: its
        ``HandlerTime`` metric (a log line the frontend parses; ``digit_*_milliseconds_total``
        time the handler), the torch-profiler switch, and the describe and explain modes
        (a ``describe`` header would answer ``null`` for a batch, ``explain`` fail it)."""
        self.context = context
        return self.postprocess(self.inference(self.preprocess(data)))

    @staticmethod
    def payload(request: dict[str, Any]) -> object:
        """The image of one request: the first of ``file``, ``data``, ``body`` present."""
        for name in PAYLOAD_FIELDS:
            if name in request:
                return request[name]
        return None

    @timed
    def preprocess(self, data: list[dict[str, Any]]) -> PreparedBatch:
        started = time.perf_counter()
        batch = prepare_batch([self.payload(request) for request in data], self.limits)
        batch.preprocess_ms = (time.perf_counter() - started) * 1000
        return batch

    @timed
    def inference(self, data: PreparedBatch, *args: Any, **kwargs: Any) -> PreparedBatch:
        started = time.perf_counter()
        data.probabilities = predict_probabilities(self.model, data.images)
        data.inference_ms = (time.perf_counter() - started) * 1000
        return data

    @timed
    def postprocess(self, data: PreparedBatch) -> list[bytes]:
        """Each answer's status, content type and JSON body, encoded here: TorchServe encodes
        a ``dict`` with ``json.dumps(indent=2)``, which runs the pure-Python encoder, at about
        twice the time of the C one that compact output gets."""
        for position in range(data.size):
            error = data.errors.get(position)
            status = error.status if error else int(HTTPStatus.OK)
            self.context.set_response_status(status, status_phrase(status), idx=position)
            self.context.set_response_content_type(position, JSON)
        responses = batch_responses(data)
        self.metrics.add(batch_samples(data, responses, self.version))
        return [json.dumps(response).encode() for response in responses]
