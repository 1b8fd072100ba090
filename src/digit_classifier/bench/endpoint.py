"""Accuracy through a running endpoint: every image is uploaded as a PNG, as users send them.

``scripts/eval_serving.py`` is the command line; the report holds, per set, the accuracy,
the errors by status, the accuracy by label and group, the commonest confusions and the
misclassified files.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any

from digit_classifier.bench.load import multipart, post_each
from digit_classifier.bench.samples import Sample

TARGETS: dict[str, float | None] = {"mnist_test": 0.996, "drawn_digits_dev": 0.985, "variants": None}
"""Accuracy a served model must reach (``--check``), by set; None: measured, no target."""


def answer(status: int | None, text: str) -> dict[str, Any]:
    """One response as ``{"status", "prediction"}`` or ``{"status", "error"}``."""
    if status is None:
        return {"status": None, "error": text}
    try:
        body = json.loads(text)
    except ValueError:
        return {"status": status, "error": f"non-JSON body: {text[:200]!r}"}
    if status != 200 or not isinstance(body, dict) or "prediction" not in body:
        error = body.get("error", text[:200]) if isinstance(body, dict) else text[:200]
        return {"status": status, "error": error}
    return {"status": status, "prediction": body["prediction"]}


def classify_all(
    url: str, samples: list[Sample], concurrency: int, token: str | None
) -> list[dict[str, Any]]:
    bodies = [multipart(sample.path.read_bytes(), sample.path.name) for sample in samples]
    return [answer(*reply) for reply in asyncio.run(post_each(url, bodies, concurrency, token=token))]


def summarize(
    samples: list[Sample], results: list[dict[str, Any]], seconds: float, max_listed: int
) -> dict[str, Any]:
    pairs = list(zip(samples, results, strict=True))
    correct = [result.get("prediction") == sample.label for sample, result in pairs]
    errors = [
        {"file": str(sample.path), "label": sample.label, **result}
        for sample, result in pairs
        if "error" in result
    ]
    wrong = [
        {"file": str(sample.path), "label": sample.label, "prediction": result["prediction"], **sample.groups}
        for (sample, result), ok in zip(pairs, correct, strict=True)
        if not ok and "prediction" in result
    ]
    return {
        "n": len(samples),
        "correct": sum(correct),
        "accuracy": sum(correct) / len(samples) if samples else None,
        "errors": len(errors),
        "error_statuses": dict(Counter(str(error["status"]) for error in errors)),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(samples) / seconds, 1) if seconds else None,
        "accuracy_by": accuracy_by_group(samples, correct),
        "confusions": dict(Counter(f"{w['label']}->{w['prediction']}" for w in wrong).most_common(20)),
        "misclassified": wrong[:max_listed],
        "error_examples": errors[:20],
    }


def accuracy_by_group(samples: list[Sample], correct: list[bool]) -> dict[str, dict[str, float]]:
    """Accuracy by label and by each group the samples carry (style, source, variant...)."""
    by_group: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for sample, ok in zip(samples, correct, strict=True):
        by_group["label"][str(sample.label)].append(ok)
        for name, value in sample.groups.items():
            by_group[name][value].append(ok)
    return {
        name: {value: round(sum(oks) / len(oks), 4) for value, oks in sorted(groups.items())}
        for name, groups in by_group.items()
    }


def evaluate(
    url: str, sets: dict[str, list[Sample]], concurrency: int, token: str | None, max_listed: int
) -> dict[str, Any]:
    """Send every set through ``url``; the report, with each set's target met or not."""
    report: dict[str, Any] = {
        "url": url,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "concurrency": concurrency,
        "targets": TARGETS,
        "datasets": {},
    }
    for name, samples in sets.items():
        started = time.perf_counter()
        results = classify_all(url, samples, concurrency, token)
        summary = summarize(samples, results, time.perf_counter() - started, max_listed)
        summary["target"] = TARGETS.get(name)
        summary["passed"] = summary["target"] is None or (summary["accuracy"] or 0) >= summary["target"]
        report["datasets"][name] = summary
        print(
            f"{name}: accuracy {summary['accuracy']:.4f} ({summary['correct']}/{summary['n']}), "
            f"errors {summary['errors']} {summary['error_statuses'] or ''}, "
            f"{summary['images_per_s']} img/s, target {summary['target']} "
            f"{'met' if summary['passed'] else 'MISSED'}",
            flush=True,
        )
    report["passed"] = all(summary["passed"] for summary in report["datasets"].values())
    return report
