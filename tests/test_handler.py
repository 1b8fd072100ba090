"""The TorchServe handler in-process, loaded from an unpacked .mar the way a worker loads it.

``TsModelLoader`` imports the handler from the model folder, builds the ``Context`` from the
manifest and ``model-config.yaml`` and calls ``initialize``; ``Service.predict`` runs a batch
and encodes the reply exactly as the worker sends it to the frontend.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import ts
from serving_support import (
    CONFIG_DIR,
    INFERENCE_FILES,
    SAME_GEOMETRY_KINDS,
    archive,
    assert_prediction,
    blank_png,
    corrupt_png,
    decode_predict_response,
    decompression_bomb_png,
    jpeg_bytes,
    make_fake_run,
    oversize_png,
    png_header_only,
    png_variant,
    transparent_png,
    truncated_png,
    ts_request,
    unpack,
)
from ts.context import Context, RequestProcessor
from ts.metrics.metric_cache_yaml_impl import MetricsCacheYamlImpl
from ts.model_loader import TsModelLoader

METRICS_YAML = CONFIG_DIR / "metrics.yaml"
"""The metrics config the servers use: a handler metric it does not declare would fail here."""
MAX_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("handler")
    mar = archive(make_fake_run(tmp / "run"), tmp / "store")
    return unpack(mar, tmp / "model")


@pytest.fixture(scope="module")
def service(model_dir: Path) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(model_dir))
        metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
        metrics.initialize_cache()
        metrics.model_name = "digit"
        loaded = TsModelLoader().load(
            "digit", str(model_dir), "digit_handler.py", None, 8, None, True, metrics
        )
        loaded.set_cl_socket(None)
        yield loaded


def predict(service: Any, *requests: dict[str, Any]) -> list[dict[str, Any]]:
    code, message, responses = decode_predict_response(service.predict(list(requests)))
    assert (code, message) == (200, "Prediction success"), "a bad request must not fail the batch"
    for response in responses:
        response["json"] = json.loads(response["body"])
    return responses


def single(service: Any, data: Any, name: str = "file", content_type: str = "image/png") -> dict[str, Any]:
    return predict(service, ts_request("r0", name, data, content_type))[0]


def test_archive_holds_only_inference_files(model_dir: Path) -> None:
    files = {path.relative_to(model_dir).as_posix() for path in model_dir.rglob("*") if path.is_file()}
    assert files == INFERENCE_FILES
    assert torch.load(model_dir / "weights.pt", weights_only=True)
    metadata = json.loads((model_dir / "metadata.json").read_text())
    assert metadata["val_acc"] == 0.5 and metadata["test_acc"] == 0.25
    assert metadata["config"]["model"]["net"]["name"] == "digit_cnn"
    assert metadata["created_at"].endswith("Z")


def test_handler_imports_no_training_stack(model_dir: Path) -> None:
    """The unpacked .mar alone must import: its own digit_classifier, no Lightning, no Hydra."""
    training = ("lightning", "pytorch_lightning", "hydra", "omegaconf")
    probe = (
        "import sys, digit_handler, digit_classifier; "
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {training!r}); "
        "print(digit_classifier.__file__); print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=model_dir,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(model_dir), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    package_file, bad = result.stdout.split("\n")[:2]
    assert Path(package_file).parent == model_dir / "digit_classifier"
    assert bad == "[]"


@pytest.mark.parametrize("field", ["file", "data", "body"])
def test_payload_fields(service: Any, field: str) -> None:
    assert_prediction(single(service, png_variant("L_white_on_black"), name=field))


@pytest.mark.parametrize("kind", [*SAME_GEOMETRY_KINDS, "1_bilevel"])
def test_every_png_flavour_gives_the_same_answer(service: Any, kind: str) -> None:
    reference = single(service, png_variant("L_white_on_black"))["json"]
    response = single(service, png_variant(kind))
    assert_prediction(response)
    if kind in SAME_GEOMETRY_KINDS:
        assert response["json"]["prediction"] == reference["prediction"]
        # 8-bit rounding of grey from colour moves an int8 network's answer by a quantisation step.
        assert response["json"]["percentages"] == pytest.approx(reference["percentages"], abs=2e-3)


@pytest.mark.parametrize("size", [(28, 28), (280, 140), (100, 400), (17, 300), (1200, 900), (3000, 2000)])
def test_sizes_and_aspect_ratios(service: Any, size: tuple[int, int]) -> None:
    assert_prediction(single(service, png_variant("L_black_on_white", size)))


ERROR_CASES = {
    "empty body": (b"", "file", "image/png", 400, "No file provided."),
    "no image field": (png_variant("L_white_on_black"), "image", "image/png", 400, "No file provided."),
    "jpeg": (jpeg_bytes(), "file", "image/jpeg", 415, "Filetype not supported."),
    "text body": ("hello", "body", "text/plain", 415, "Filetype not supported."),
    "json body": ({"image": "aGVsbG8="}, "body", "application/json", 415, "Filetype not supported."),
    "truncated png": (truncated_png(), "file", "image/png", 400, "Problem reading file."),
    "corrupt png": (corrupt_png(), "file", "image/png", 400, "Problem reading file."),
    "too many bytes": (oversize_png(MAX_BYTES + 1), "file", "image/png", 413, None),
    "too many pixels": (png_header_only(5000, 5000), "file", "image/png", 413, None),
    "bomb warning zone": (png_header_only(10000, 10000), "file", "image/png", 413, None),
    "decompression bomb": (decompression_bomb_png(), "file", "image/png", 413, None),
    "blank white": (blank_png(255), "file", "image/png", 422, None),
    "blank black": (blank_png(0), "file", "image/png", 422, None),
    "fully transparent": (transparent_png(), "file", "image/png", 422, None),
}


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors(service: Any, case: str) -> None:
    data, field, content_type, status, message = ERROR_CASES[case]
    response = single(service, data, field, content_type)
    assert response["status"] == status
    assert response["phrase"] and response["content_type"] == "application/json"
    assert response["json"]["status"] == status
    assert isinstance(response["json"]["error"], str)
    if message:
        assert response["json"]["error"] == message


def test_batch_with_bad_requests_among_good(service: Any) -> None:
    good = png_variant("L_white_on_black")
    other = png_variant("RGB_black_on_white", (200, 320))
    responses = predict(
        service,
        ts_request("a", "file", good),
        ts_request("b", "file", b"GIF89a...", "image/gif"),
        ts_request("c", "data", other),
        ts_request("d", "file", blank_png()),
        ts_request("e", "body", good),
    )
    assert [r["id"] for r in responses] == list("abcde")
    assert [r["status"] for r in responses] == [200, 415, 200, 422, 200]
    assert_prediction(responses[0])
    assert responses[0]["json"] == responses[4]["json"]
    alone = single(service, other)["json"]
    assert responses[2]["json"]["percentages"] == pytest.approx(alone["percentages"], abs=1e-5)


def test_batch_of_only_bad_requests(service: Any) -> None:
    responses = predict(service, ts_request("a", "file", b""), ts_request("b", "file", b"nope"))
    assert [r["status"] for r in responses] == [400, 415]


def metric_lines(records: list[logging.LogRecord]) -> list[tuple[str, float, dict[str, str]]]:
    """The ``[METRICS]digit_*`` lines a worker writes: name, value and dimensions of each."""
    lines = []
    for record in records:
        text = record.getMessage()
        if text.startswith("[METRICS]digit_"):
            head, dimensions = text.removeprefix("[METRICS]").split("|#")[:2]
            name, value = head.split(":")
            pairs = (pair.split(":", 1) for pair in dimensions.split(","))
            lines.append((name.split(".")[0], float(value), dict(pairs)))
    return lines


def test_a_batch_reports_its_metrics_once_per_label(
    service: Any, model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = png_variant("L_white_on_black")
    buffer = service._entry_point.__self__.metrics
    assert buffer.flush_interval == 1.0, "the shipped model config adds counts up for a second"
    buffer.flush()
    with caplog.at_level(logging.INFO, logger="ts.metrics"):
        predict(
            service,
            ts_request("a", "file", good),
            ts_request("b", "file", b"GIF89a...", "image/gif"),
            ts_request("c", "file", good),
            ts_request("d", "file", blank_png()),
            ts_request("e", "file", good),
        )
        buffer.flush()
    assert not [record for record in caplog.records if "Failed to update metric" in record.getMessage()]
    lines = metric_lines(caplog.records)
    counts = {(name, tuple(sorted(labels.items()))): value for name, value, labels in lines}
    assert len(counts) == len(lines), "one call per metric and label value"
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    base = {"ModelVersion": manifest["model"]["modelVersion"], "ModelName": "digit", "Level": "Model"}

    def count(name: str, **labels: str) -> float:
        return counts[(name, tuple(sorted({**labels, **base}.items())))]

    assert count("digit_requests_total", status="200") == 3
    assert count("digit_requests_total", status="415") == count("digit_requests_total", status="422") == 1
    assert count("digit_refused_images_total", reason="unsupported_type") == 1
    assert count("digit_refused_images_total", reason="blank") == 1
    (digit,) = [labels["digit"] for name, _, labels in lines if name == "digit_predictions_total"]
    assert count("digit_predictions_total", digit=digit) == 3
    assert count("digit_batches_total") == 1
    timings = {name: value for name, value, _ in lines if name.endswith("_milliseconds_total")}
    assert set(timings) == {"digit_preprocess_milliseconds_total", "digit_inference_milliseconds_total"}
    assert all(value > 0 for value in timings.values())
    assert len(lines) == 9


@pytest.mark.parametrize("header", ["explain", "describe"])
def test_explain_and_describe_headers_do_not_change_answers(service: Any, header: str) -> None:
    png = png_variant("L_white_on_black")
    plain = single(service, png)["json"]
    responses = predict(
        service, ts_request("a", "file", png, **{header: "True"}), ts_request("b", "file", png)
    )
    for response in responses:
        assert_prediction(response)
        assert response["json"]["percentages"] == pytest.approx(plain["percentages"], abs=1e-5)


def test_int8_network_has_a_graph_for_every_batch_size_up_to_torchserves(service: Any) -> None:
    """The fixture's worker was loaded with TorchServe's batch size 8 (the handler is reached
    through TorchServe 0.12's ``Service``, whose entry point is the handler's ``handle``)."""
    model = service._entry_point.__self__.model
    assert sorted(model.graphs, key=int) == [str(size) for size in range(1, 9)]


def test_limits_and_threads_come_from_model_config(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(model_dir))
    from digit_handler import DigitHandler

    metrics = MetricsCacheYamlImpl(config_file_path=str(METRICS_YAML))
    metrics.initialize_cache()
    small, big = png_variant("L_white_on_black", (64, 64)), png_variant("L_white_on_black", (1200, 900))
    assert len(big) > len(small) + 10
    config = {
        "handler": {"torch_num_threads": 1, "max_image_bytes": len(small) + 10, "max_image_pixels": 100 * 100}
    }
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    context = Context("digit", str(model_dir), manifest, 4, None, ts.__version__, True, metrics, config)
    threads = torch.get_num_threads()
    try:
        handler = DigitHandler()
        handler.initialize(context)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert handler.limits.max_pixels == 10000

    requests = [{"file": big}, {"file": small}, {"file": png_header_only(200, 200)}]
    context.request_processor = [RequestProcessor({}) for _ in requests]
    bodies = handler.handle(requests, context)
    assert [context.get_response_status(i)[0] for i in range(len(requests))] == [413, 200, 413]
    assert "prediction" in json.loads(bodies[1])
    assert all(context.get_response_content_type(i) == "application/json" for i in range(len(requests)))
