"""Measure a running TorchServe endpoint on MNIST test and the drawn-digits dev set.

    python scripts/eval_serving.py [--url http://127.0.0.1:8080/predictions/digit]
                                   [--data-dir ../shared/data] [--concurrency 8] [--check]

Every image goes through HTTP as a PNG file upload, so this measures what users get:
the MNIST test images are written once as PNGs to ``--cache-dir``, the drawn digits are
sent as they are. Prints accuracy and errors per set and writes a JSON report (with the
misclassified files). ``--check`` makes the exit status 1 when a target is missed:
99.5% on MNIST test, 97% on drawn-digits-dev.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(os.environ.get("DIGIT_DATA_DIR", ROOT.parent / "shared" / "data"))
TARGETS = {"mnist_test": 0.995, "drawn_digits_dev": 0.97}


@dataclass
class Sample:
    path: Path
    label: int
    groups: dict[str, str] = field(default_factory=dict)


def mnist_test_pngs(data_dir: Path, cache_dir: Path) -> list[Sample]:
    """The 10,000 MNIST test images as PNG files, written on first use."""
    index = cache_dir / "index.csv"
    if not index.is_file():
        from PIL import Image
        from torchvision.datasets import MNIST

        test = MNIST(str(data_dir), train=False, download=False)
        cache_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for number, (image, label) in enumerate(zip(test.data.numpy(), test.targets.tolist(), strict=True)):
            name = f"{number:05d}_{label}.png"
            Image.fromarray(image, mode="L").save(cache_dir / name)
            rows.append((name, label))
        partial = index.with_suffix(".tmp")
        with partial.open("w", newline="") as file:
            csv.writer(file).writerows([("path", "label"), *rows])
        partial.replace(index)
    with index.open(newline="") as file:
        return [Sample(cache_dir / row["path"], int(row["label"])) for row in csv.DictReader(file)]


def drawn_digits(drawn_dir: Path) -> list[Sample]:
    with (drawn_dir / "index.csv").open(newline="") as file:
        return [
            Sample(
                drawn_dir / row["path"], int(row["label"]), {"style": row["style"], "source": row["source"]}
            )
            for row in csv.DictReader(file)
        ]


async def classify_all(
    url: str, samples: list[Sample], concurrency: int, token: str | None
) -> list[dict[str, Any]]:
    """POST every sample as multipart field ``file``; one result dict per sample, in order."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    semaphore = asyncio.Semaphore(concurrency)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:

        async def one(sample: Sample) -> dict[str, Any]:
            form = aiohttp.FormData()
            form.add_field(
                "file", sample.path.read_bytes(), filename=sample.path.name, content_type="image/png"
            )
            async with semaphore:
                try:
                    async with session.post(url, data=form) as response:
                        text = await response.text()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    return {"status": None, "error": f"{type(error).__name__}: {error}"}
            try:
                body = json.loads(text)
            except ValueError:
                return {"status": status, "error": f"non-JSON body: {text[:200]!r}"}
            if status != 200 or "prediction" not in body:
                return {
                    "status": status,
                    "error": body.get("error", text[:200]) if isinstance(body, dict) else text[:200],
                }
            return {"status": status, "prediction": body["prediction"]}

        return await asyncio.gather(*(one(sample) for sample in samples))


def summarize(
    samples: list[Sample], results: list[dict[str, Any]], seconds: float, max_listed: int
) -> dict[str, Any]:
    correct = [
        result.get("prediction") == sample.label for sample, result in zip(samples, results, strict=True)
    ]
    errors = [
        {"file": str(sample.path), "label": sample.label, **result}
        for sample, result in zip(samples, results, strict=True)
        if "error" in result
    ]
    wrong = [
        {"file": str(sample.path), "label": sample.label, "prediction": result["prediction"], **sample.groups}
        for sample, result, ok in zip(samples, results, correct, strict=True)
        if not ok and "prediction" in result
    ]
    by_group: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for sample, ok in zip(samples, correct, strict=True):
        by_group["label"][str(sample.label)].append(ok)
        for name, value in sample.groups.items():
            by_group[name][value].append(ok)
    return {
        "n": len(samples),
        "correct": sum(correct),
        "accuracy": sum(correct) / len(samples) if samples else None,
        "errors": len(errors),
        "error_statuses": dict(Counter(str(error["status"]) for error in errors)),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(samples) / seconds, 1) if seconds else None,
        "accuracy_by": {
            name: {value: round(sum(oks) / len(oks), 4) for value, oks in sorted(groups.items())}
            for name, groups in by_group.items()
        },
        "confusions": dict(Counter(f"{w['label']}->{w['prediction']}" for w in wrong).most_common(20)),
        "misclassified": wrong[:max_listed],
        "error_examples": errors[:20],
    }


def evaluate(
    url: str, sets: dict[str, list[Sample]], concurrency: int, token: str | None, max_listed: int
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "url": url,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "concurrency": concurrency,
        "targets": TARGETS,
        "datasets": {},
    }
    for name, samples in sets.items():
        started = time.perf_counter()
        results = asyncio.run(classify_all(url, samples, concurrency, token))
        summary = summarize(samples, results, time.perf_counter() - started, max_listed)
        summary["target"] = TARGETS.get(name)
        summary["passed"] = summary["target"] is None or (summary["accuracy"] or 0) >= summary["target"]
        report["datasets"][name] = summary
        print(
            f"{name}: accuracy {summary['accuracy']:.4f} ({summary['correct']}/{summary['n']}), "
            f"errors {summary['errors']} {summary['error_statuses'] or ''}, "
            f"{summary['images_per_s']} img/s, target {summary['target']} "
            f"{'met' if summary['passed'] else 'MISSED'}"
        )
    report["passed"] = all(summary["passed"] for summary in report["datasets"].values())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/predictions/digit")
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="holds MNIST/raw (DIGIT_DATA_DIR)"
    )
    parser.add_argument("--drawn-dir", type=Path, help="default: <data-dir>/drawn-digits-dev")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "mnist-test-png")
    parser.add_argument("--sets", nargs="+", choices=sorted(TARGETS), default=sorted(TARGETS))
    parser.add_argument("--limit", type=int, help="only the first N images of each set (smoke runs)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--token", default=os.environ.get("TS_INFERENCE_TOKEN"), help="inference key, with token auth"
    )
    parser.add_argument("--report", type=Path, default=ROOT / "logs" / "eval_serving" / "report.json")
    parser.add_argument("--max-listed", type=int, default=200, help="misclassified files kept in the report")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    sets: dict[str, list[Sample]] = {}
    try:
        if "mnist_test" in args.sets:
            sets["mnist_test"] = mnist_test_pngs(args.data_dir, args.cache_dir)
        if "drawn_digits_dev" in args.sets:
            sets["drawn_digits_dev"] = drawn_digits(args.drawn_dir or args.data_dir / "drawn-digits-dev")
    except (OSError, RuntimeError) as error:
        print(f"error: cannot read the evaluation data: {error}", file=sys.stderr)
        return 2
    if args.limit:
        sets = {name: samples[: args.limit] for name, samples in sets.items()}

    report = evaluate(args.url, sets, args.concurrency, args.token, args.max_listed)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Report: {args.report}")
    return 1 if args.check and not report["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
