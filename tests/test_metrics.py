"""The handler's metric buffer: counters added up over batches, timings reported at once."""

from __future__ import annotations

import threading
import time

from digit_classifier.runtime.metrics import MetricBuffer, Sample

VERSION = (("ModelVersion", "1"),)


def batch(status: str, digit: str, milliseconds: float) -> list[Sample]:
    return [
        Sample("digit_requests_total", 1, (("status", status), *VERSION)),
        Sample("digit_predictions_total", 1, (("digit", digit), *VERSION)),
        Sample("digit_inference_milliseconds", milliseconds, VERSION, "histogram"),
    ]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[Sample]] = []
        self.reported = threading.Event()

    def __call__(self, samples: list[Sample]) -> None:
        self.calls.append(samples)
        if any(sample.kind == "counter" for sample in samples):
            self.reported.set()

    def counters(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        totals: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for call in self.calls:
            for sample in call:
                if sample.kind == "counter":
                    key = (sample.name, sample.labels)
                    totals[key] = totals.get(key, 0) + sample.value
        return totals


def test_counts_are_added_up_until_a_flush_and_timings_go_at_once() -> None:
    recorder = Recorder()
    buffer = MetricBuffer(recorder, flush_interval=3600)
    for milliseconds in (1.0, 2.0, 3.0):
        buffer.add(batch("200", "7", milliseconds))
    buffer.add(batch("200", "1", 4.0))
    assert [sample.value for call in recorder.calls for sample in call] == [1.0, 2.0, 3.0, 4.0]
    buffer.flush()
    flushed = recorder.calls[-1]
    assert len(flushed) == 3, "one sample per metric and label value"
    assert recorder.counters() == {
        ("digit_requests_total", (("status", "200"), *VERSION)): 4,
        ("digit_predictions_total", (("digit", "7"), *VERSION)): 3,
        ("digit_predictions_total", (("digit", "1"), *VERSION)): 1,
    }
    calls = len(recorder.calls)
    buffer.close()
    assert len(recorder.calls) == calls, "nothing left to report, no empty call"


def test_the_thread_reports_counts_within_the_interval() -> None:
    recorder = Recorder()
    buffer = MetricBuffer(recorder, flush_interval=0.05)
    started = time.monotonic()
    buffer.add(batch("422", "0", 1.0))
    assert recorder.reported.wait(5), "counts never reported"
    assert time.monotonic() - started < 5
    buffer.close()
    assert recorder.counters() == {
        ("digit_requests_total", (("status", "422"), *VERSION)): 1,
        ("digit_predictions_total", (("digit", "0"), *VERSION)): 1,
    }


def test_interval_zero_reports_every_batch_at_once() -> None:
    recorder = Recorder()
    buffer = MetricBuffer(recorder, flush_interval=0)
    buffer.add(batch("200", "3", 1.0))
    assert len(recorder.calls) == 1 and len(recorder.calls[0]) == 3
