"""The handler's metric buffer: batches' counts added up, reported once per label."""

from __future__ import annotations

import logging
import threading

import pytest

from digit_classifier.runtime.metrics import MetricBuffer, Sample, drop_batch_log_lines

VERSION = (("ModelVersion", "1"),)


def batch(status: str, digit: str, milliseconds: float) -> list[Sample]:
    return [
        Sample("digit_requests_total", 1, (("status", status), *VERSION)),
        Sample("digit_predictions_total", 1, (("digit", digit), *VERSION)),
        Sample("digit_inference_milliseconds_total", milliseconds, VERSION, "ms"),
    ]


class Recorder:
    """An ``emit`` that keeps what it is handed."""

    def __init__(self) -> None:
        self.calls: list[list[Sample]] = []
        self.called = threading.Event()

    def __call__(self, samples: list[Sample]) -> None:
        self.calls.append(samples)
        self.called.set()

    def totals(self) -> dict[tuple[str, tuple[tuple[str, str], ...], str], float]:
        totals: dict[tuple[str, tuple[tuple[str, str], ...], str], float] = {}
        for call in self.calls:
            for sample in call:
                key = (sample.name, sample.labels, sample.unit)
                totals[key] = totals.get(key, 0) + sample.value
        return totals


def test_batches_are_added_up_until_a_flush() -> None:
    recorder = Recorder()
    buffer = MetricBuffer(recorder, flush_interval=3600)
    for milliseconds in (1.0, 2.0, 3.0):
        buffer.add(batch("200", "7", milliseconds))
    buffer.add(batch("200", "1", 4.0))
    assert recorder.calls == []
    buffer.flush()
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 4, "one sample per metric and label value"
    assert recorder.totals() == {
        ("digit_requests_total", (("status", "200"), *VERSION), "count"): 4,
        ("digit_predictions_total", (("digit", "7"), *VERSION), "count"): 3,
        ("digit_predictions_total", (("digit", "1"), *VERSION), "count"): 1,
        ("digit_inference_milliseconds_total", VERSION, "ms"): 10.0,
    }
    buffer.close()
    assert len(recorder.calls) == 1, "nothing left to report, no empty call"


def test_the_thread_reports_within_the_interval() -> None:
    recorder = Recorder()
    buffer = MetricBuffer(recorder, flush_interval=0.05)
    buffer.add(batch("422", "0", 1.0))
    assert recorder.called.wait(5), "never reported"
    buffer.close()
    assert recorder.totals()[("digit_requests_total", (("status", "422"), *VERSION), "count")] == 1


def test_interval_zero_reports_every_batch_at_once() -> None:
    recorder = Recorder()
    buffer = MetricBuffer(recorder, flush_interval=0)
    buffer.add(batch("200", "3", 1.0))
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 3


def test_torchserve_batch_lines_are_dropped_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    root, metrics = logging.getLogger(), logging.getLogger("ts.metrics.caching_metric")
    saved = root.filters[:], metrics.filters[:]
    try:
        for logger in (root, metrics):
            logger.filters[:] = [existing for existing in logger.filters if not hasattr(existing, "drops")]
        drop_batch_log_lines()
        drop_batch_log_lines()
        assert [hasattr(existing, "drops") for existing in root.filters].count(True) == 1, "installed once"
        with caplog.at_level(logging.INFO):
            logging.info("Backend received inference at: %d", 1796180000)
            metrics.info(
                "[METRICS]PredictionTime.Milliseconds:1.2|#ModelName:digit,Level:Model|#hostname:h,1"
            )
            metrics.info("[METRICS]digit_batches_total.count:3|#ModelVersion:1|#hostname:h,1")
            logging.info("Frontend disconnected.")
        assert [record.getMessage().split(".")[0] for record in caplog.records] == [
            "[METRICS]digit_batches_total",
            "Frontend disconnected",
        ]
    finally:
        root.filters[:], metrics.filters[:] = saved
