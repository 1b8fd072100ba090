"""The benchmark scripts behind docs/performance.md, run end to end, briefly.

They measure nothing here: the point is that every command docs/performance.md quotes still runs
and writes a complete report, on the small MNIST copy and a randomly initialised model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_script
from serving_support import archive, make_fake_run

from digit_classifier.bench.profile import WAIT, stage_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_run(tmp_path_factory.mktemp("bench_run") / "run")


def test_bench_train(small_mnist: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "train.json"
    result = run_script(
        "scripts/bench_train.py",
        *("--data-dir", str(small_mnist), "--steps", "5", "--rounds", "2"),
        *("--time-to-accuracy", "--target", "0.5", "--profile", "--output", str(report_path)),
        *("--override", "data.val_size=200", "--override", "data.download=false"),
        *("--override", "trainer.max_epochs=1"),
    )
    report = json.loads(report_path.read_text())
    assert set(report["models"]) == {"seed_cnn", "digit_cnn"}
    for row in report["models"].values():
        assert row["bare_images_per_s"] > 0 and row["lightning_images_per_s"] > 0
        assert len(row["rounds"]) == 2 and row["lightning_over_bare"] > 0
    assert [epoch for epoch, _, _ in report["time_to_accuracy"]["epochs"]] == [0]
    assert "lightning/bare" in result.stdout and "test accuracy" in result.stdout
    assert "aten::convolution_backward" in result.stdout


def test_bench_inference(fake_run: Path, small_mnist: Path, tmp_path: Path) -> None:
    mar = archive(fake_run, tmp_path / "store")
    report_path = tmp_path / "inference.json"
    run_script(
        "scripts/bench_inference.py",
        *("--model", str(mar), "--data-dir", str(small_mnist), "--cache-dir", str(tmp_path / "png")),
        *("--seconds", "0.05", "--report", str(report_path), "--accuracy"),
    )
    report = json.loads(report_path.read_text())
    assert report["preprocess_us_per_image"]["mnist_test"] > 0
    assert set(report["accuracy"]) == {"served", "served_bfloat16", "served_int8"}
    assert all(0 <= sets["mnist_test"] <= 1 for sets in report["accuracy"].values())
    assert {
        f"{variant}_batch{batch}"
        for variant in ("plain", "channels_last", "served", "served_bfloat16", "served_int8")
        for batch in (1, 4, 8)
    } == set(report["forward_us_per_image"])


def test_bench_protocol(small_mnist: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "protocol.json"
    result = run_script(
        "scripts/bench_protocol.py",
        *("--data-dir", str(small_mnist), "--cache-dir", str(tmp_path / "png")),
        *("--seconds", "0.05", "--rounds", "2", "--report", str(report_path)),
    )
    rounds = json.loads(report_path.read_text())["rounds"]
    assert len(rounds) == 2 and all(costs["batch"] == 4 and costs["buffered_read_us"] > 0 for costs in rounds)
    assert "buffered read" in result.stdout


def test_bench_serving_report_and_tuning(fake_run: Path, small_mnist: Path, tmp_path: Path) -> None:
    common = [
        str(fake_run),
        *("--data-dir", str(small_mnist), "--cache-dir", str(tmp_path / "png"), "--images", "20"),
        *("--seconds", "1", "--warmup", "0", "--server-warmup", "0.5"),
        *("--report", str(tmp_path / "serving.json")),
    ]
    run_script(
        "scripts/bench_serving.py",
        *common,
        *("--handlers", "noop", "stock", "full", "--concurrency", "1", "4", "--rounds", "1"),
        *("--plot", str(tmp_path / "plot.png")),
    )
    report = json.loads((tmp_path / "serving.json").read_text())
    for handler in ("noop", "stock", "full"):
        rows = report["handlers"][handler]
        assert [row["concurrency"] for row in rows] == [1, 4]
        assert all(row["ok"] > 0 and row["errors"] == 0 and len(row["rps_runs"]) == 1 for row in rows)
        assert all(row["cpu_ms_per_request"]["workers"] > 0 for row in rows)
    assert set(report["fraction_of_noop"]["full"]) == set(report["fraction_of_noop"]["stock"]) == {"1", "4"}
    assert report["cold_start"]["first_prediction_s"] > 0
    assert (tmp_path / "plot.png").stat().st_size > 0

    run_script(
        "scripts/bench_serving.py",
        *common,
        *("--tune", "--rounds", "1", "--tune-concurrency", "2", "--settings", "workers=1,batch=2,delay=1"),
    )
    tuning = (tmp_path / "serving_tuning.md").read_text()
    assert "batch" in tuning


def test_profile_stages_tell_a_wait_for_the_next_batch_from_parsing_it() -> None:
    loop = ["run_server (model_service_worker.py:260)", "handle_connection (model_service_worker.py:179)"]
    wait_stock = [*loop, "retrieve_msg (otf_message_handler.py:33)", "_retrieve_buffer (otf.py:181)"]
    wait_ours = [*loop, "retrieve_msg (otf.py:33)", "FrontendReader.__call__ (protocol.py:41)"]
    parse = [*loop, "retrieve_msg (otf_message_handler.py:36)", "_retrieve_inference_msg (otf.py:238)"]
    parse += ["_retrieve_request (otf.py:253)", "_retrieve_int (otf.py:193)", "_retrieve_buffer (otf.py:181)"]
    assert stage_of(wait_stock) == stage_of(wait_ours) == WAIT
    assert stage_of(parse) == "TorchServe protocol (read request, encode answer)"


def test_profile_stages_count_either_png_decoder_as_decoding() -> None:
    batch = ["handle (digit_handler.py:80)", "prepare_batch (inference.py:160)"]
    batch.append("read_png (preprocessing.py:170)")
    libspng = [*batch, "_decode_plain (preprocessing.py:185)", "load (pyspng/lib.py:47)"]
    pillow = [*batch, "_decode_with_pillow (preprocessing.py:192)", "load (PIL/ImageFile.py:300)"]
    ink = [*batch[:2], "ink_map (preprocessing.py:260)"]
    resize = [*batch[:2], "fit_digit (preprocessing.py:330)", "resize (PIL/Image.py:2300)"]
    assert stage_of(libspng) == stage_of(pillow) == "decode PNG"
    assert stage_of(ink) == stage_of(resize) == "preprocess (ink, crop, resize, centre)"


def test_profile_worker(fake_run: Path, small_mnist: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "profile.json"
    run_script(
        "scripts/profile_worker.py",
        *(str(fake_run), "--data-dir", str(small_mnist), "--cache-dir", str(tmp_path / "png")),
        *("--seconds", "2", "--warmup", "1", "--rate", "100", "--report", str(report_path)),
    )
    report = json.loads(report_path.read_text())
    assert report["requests"] > 0 and report["samples"] > 0 and len(report["workers"]) == 2
    # Stages that take a tenth or more of a worker's samples; decoding (a few percent, a handful
    # of samples in two seconds) is left to the stack-by-stack test above.
    assert {"forward pass", "preprocess (ink, crop, resize, centre)"} <= set(report["stages"])
    assert "| stage |" in report_path.with_suffix(".md").read_text()


def test_bench_recipe(small_mnist: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "recipe.json"
    run_script(
        "scripts/bench_recipe.py",
        *("--data-dir", str(small_mnist), "--cache-dir", str(tmp_path / "png"), "--limit", "30"),
        *("--variants-dir", str(tmp_path / "variants"), "--runs-dir", str(tmp_path / "runs")),
        *("--target", "0.3", "--report", str(report_path)),
        *("--override", "data.val_size=200", "--override", "data.download=false"),
        *("--override", "trainer.max_epochs=1", "--experiment", "accurate"),
    )
    report = json.loads(report_path.read_text())
    assert {name: len(runs) for name, runs in report["runs"].items()} == {
        "seed_baseline": 1,
        "default": 1,
        "accurate": 1,
    }
    assert report["summary"]["wall_ratio"] > 0
    assert report["endpoint"]["default"]["mnist_test"]["n"] == 30
    assert report["endpoint"]["accurate"]["mnist_test"]["n"] == 30
    assert "x seed" in report_path.with_suffix(".md").read_text()
