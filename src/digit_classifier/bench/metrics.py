"""What the handler's metrics cost a worker per batch, in one process.

The handler counts a batch (``runtime.metrics.batch_samples``) and adds the counts to a
``MetricBuffer``, which hands their sums to TorchServe's metric cache (the handler's
``emit``) once a second; the cache writes one log line per sample to the worker's stdout,
for the frontend to parse. Both ways are timed here: as shipped (the flushes, a few calls
a second, left out) and reporting every batch's counts at once
(``metrics_flush_seconds: 0``). The lines go to ``/dev/null`` through the same logger, so
the figures are the worker's own work; the frontend's reading and parsing runs in its JVM.
They are set beside the handler's own work on the same batch: ``prepare_batch``, the
forward pass and ``batch_responses``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
from collections.abc import Iterator
from functools import partial
from types import ModuleType

from torch import nn
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl

from digit_classifier.bench.inference import microseconds_per_call
from digit_classifier.runtime.inference import batch_responses, predict_probabilities, prepare_batch
from digit_classifier.runtime.metrics import MetricBuffer, batch_samples
from digit_classifier.runtime.preprocessing import ImageLimits
from digit_classifier.serving.archive import HANDLER
from digit_classifier.serving.torchserve import CONFIG_DIR


def handler_module() -> ModuleType:
    """``handlers/digit_handler.py``, imported from its file as a worker imports it from a .mar."""
    spec = importlib.util.spec_from_file_location("digit_handler", HANDLER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metric_cache(batch_size: int) -> MetricsCacheYamlImpl:
    """TorchServe's worker-side metric cache with the servers' metrics.yaml, in a batch's state."""
    cache = MetricsCacheYamlImpl(config_file_path=str(CONFIG_DIR / "metrics.yaml"))
    cache.initialize_cache()
    cache.model_name = "digit"
    cache.request_ids = {position: f"request-{position}" for position in range(batch_size)}
    return cache


@contextlib.contextmanager
def metric_lines_to_devnull() -> Iterator[None]:
    logger = logging.getLogger("ts.metrics")
    with open(os.devnull, "w") as devnull:
        handler = logging.StreamHandler(devnull)
        saved = logger.handlers, logger.level, logger.propagate
        logger.handlers, logger.level, logger.propagate = [handler], logging.INFO, False
        try:
            yield
        finally:
            logger.handlers, logger.level, logger.propagate = saved


def batch_costs_us(network: nn.Module, payloads: list[bytes], seconds: float) -> dict[str, float]:
    """Microseconds per batch of ``payloads``: the handler's own work, and its metrics."""
    limits = ImageLimits()

    def handler_work() -> list[dict]:
        batch = prepare_batch(payloads, limits)
        batch.probabilities = predict_probabilities(network, batch.images)
        return batch_responses(batch)

    batch = prepare_batch(payloads, limits)
    batch.probabilities = predict_probabilities(network, batch.images)
    responses = batch_responses(batch)
    emit, cache = handler_module().emit, metric_cache(len(payloads))

    def count(buffer: MetricBuffer) -> None:
        buffer.add(batch_samples(batch, responses, "1"))

    costs = {}
    with metric_lines_to_devnull():
        for name, interval in (("metrics_us", 3600.0), ("metrics_every_batch_us", 0.0)):
            buffer = MetricBuffer(lambda samples: emit(cache, samples), interval)
            costs[name] = microseconds_per_call(partial(count, buffer), seconds)
            buffer.close()
    work = microseconds_per_call(handler_work, seconds)
    return {
        "handler_work_us": round(work, 1),
        **{name: round(cost, 1) for name, cost in costs.items()},
        "metrics_share": round(costs["metrics_us"] / work, 4),
        "metrics_every_batch_share": round(costs["metrics_every_batch_us"] / work, 4),
    }
