"""Benchmark-only handler that does no work: the ceiling for the serving benchmark.

Every request of a batch gets the same fixed JSON answer, shaped like a real one, so
what ``scripts/bench_serving.py`` measures with it is TorchServe itself (netty, the
frontend-to-worker protocol, batching, JSON encoding) and the load generator. Never
used in production archives.
"""

from __future__ import annotations

from typing import Any

from digit_classifier.runtime.networks import NUM_CLASSES

ANSWER = {"prediction": 0, "percentages": [1 / NUM_CLASSES] * NUM_CLASSES}


class NoopHandler:
    """Answers every request with :data:`ANSWER`, without reading it."""

    def __init__(self) -> None:
        self.initialized = False

    def initialize(self, context: Any) -> None:
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        for position in range(len(data)):
            context.set_response_content_type(position, "application/json")
        return [ANSWER] * len(data)
