"""Helpers for the export, handler and serving tests: checkpoints, archives, PNGs, wire format."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
import yaml
from PIL import Image, ImageDraw

from digit_classifier.runtime.networks import build_network
from digit_classifier.serving.torchserve import CONFIG_DIR, TorchServe, derive_config

ROOT = Path(__file__).resolve().parents[1]

FAKE_NET = {"name": "digit_cnn", "width": 8, "dropout": 0.1}
INFERENCE_FILES = {
    "MAR-INF/MANIFEST.json",
    "digit_handler.py",
    "weights.pt",
    "network.json",
    "metadata.json",
    "model-config.yaml",
    "digit_classifier/__init__.py",
    "digit_classifier/runtime/__init__.py",
    "digit_classifier/runtime/networks.py",
    "digit_classifier/runtime/preprocessing.py",
    "digit_classifier/runtime/inference.py",
    "digit_classifier/runtime/metrics.py",
    "digit_classifier/runtime/precision.py",
    "digit_classifier/runtime/protocol.py",
    "calibration.pt",
}
"""Everything a .mar holds: the handler, the runtime folder, the model files, and the images
int8 is calibrated on (the project's model config serves int8); nothing else."""


# --- checkpoints and archives ---------------------------------------------------------------


def make_fake_run(
    run_dir: Path, best_val_acc: float | None = 0.5, net: dict | None = None, seed: int = 0
) -> Path:
    """A run folder in the training layout with a randomly initialised network."""
    net = dict(net or FAKE_NET)
    torch.manual_seed(seed)
    network = build_network(**net)
    checkpoint = {
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "2.6.6",
        "state_dict": {f"net.{key}": value for key, value in network.state_dict().items()},
        "hyper_parameters": {"net": net, "label_smoothing": 0.0},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val/acc', 'mode': 'max'}": {
                "monitor": "val/acc",
                "best_model_score": torch.tensor(best_val_acc or 0.0),
                "current_score": torch.tensor(best_val_acc or 0.0),
            }
        },
    }
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra").mkdir(exist_ok=True)
    best = run_dir / "checkpoints" / "best.ckpt"
    torch.save(checkpoint, best)
    torch.save(checkpoint, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / ".hydra" / "config.yaml").write_text(
        f"model:\n  net:\n    name: {net['name']}\nseed: {seed}\n"
    )
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- seed={seed}\n")
    metrics = {
        "best_val_acc": best_val_acc,
        "test_acc": 0.25,
        "test_loss": 2.0,
        "best_ckpt_path": str(best),
        "wall_time_s": 1.0,
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return run_dir


def archive(target: Path, model_store: Path, *extra: str) -> Path:
    """Run ``scripts/archive.py`` as a user would; returns the ``.mar`` (``digit.mar`` or ``--file``)."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "archive.py"),
            str(target),
            "--model-store",
            str(model_store),
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"archive.py failed:\n{result.stdout}\n{result.stderr}"
    return model_store / (extra[extra.index("--file") + 1] if "--file" in extra else "digit.mar")


def offline_predictions(mar: Path, files: list[Path]) -> dict[str, dict[str, Any]]:
    """What ``digit_classifier.predict`` answers for each file, without TorchServe."""
    result = subprocess.run(
        [sys.executable, "-m", "digit_classifier.serving.predict", "--model", str(mar), *map(str, files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return {line["file"]: line for line in map(json.loads, result.stdout.splitlines())}


def unpack(mar: Path, model_dir: Path) -> Path:
    with zipfile.ZipFile(mar) as archive_file:
        archive_file.extractall(model_dir)
    return model_dir


# --- PNGs -----------------------------------------------------------------------------------


def digit_ink(size: tuple[int, int] = (280, 280)) -> np.ndarray:
    """A hand-drawn-looking "7" as uint8 ink (255 = ink) on a ``width x height`` canvas."""
    width, height = size
    canvas = Image.new("L", size, 0)
    draw = ImageDraw.Draw(canvas)
    stroke = max(2, min(size) // 14)
    top, left, right = height * 0.2, width * 0.3, width * 0.7
    draw.line(
        [(left, top), (right, top), (width * 0.45, height * 0.8)], fill=255, width=stroke, joint="curve"
    )
    return np.asarray(canvas)


def encode(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_variant(kind: str, size: tuple[int, int] = (280, 280)) -> bytes:
    """The same digit encoded in one of many PNG flavours."""
    ink = digit_ink(size)
    if kind == "L_white_on_black":
        return encode(Image.fromarray(ink))
    if kind == "L_black_on_white":
        return encode(Image.fromarray(255 - ink))
    if kind == "RGB_black_on_white":
        return encode(Image.fromarray(np.stack([255 - ink] * 3, axis=-1)))
    if kind == "RGB_blue_on_white":
        rgb = np.stack([255 - ink, 255 - ink, np.full_like(ink, 255)], axis=-1)
        return encode(Image.fromarray(rgb))
    if kind == "RGBA_opaque":
        rgba = np.stack([255 - ink] * 3 + [np.full_like(ink, 255)], axis=-1)
        return encode(Image.fromarray(rgba))
    if kind == "RGBA_ink_only_in_alpha":
        rgba = np.stack([np.zeros_like(ink)] * 3 + [ink], axis=-1)
        return encode(Image.fromarray(rgba))
    if kind == "RGBA_white_ink_in_alpha":
        rgba = np.stack([np.full_like(ink, 255)] * 3 + [ink], axis=-1)
        return encode(Image.fromarray(rgba))
    if kind == "LA_ink_only_in_alpha":
        return encode(Image.fromarray(np.stack([np.zeros_like(ink), ink], axis=-1)))
    if kind == "P_palette":
        return encode(Image.fromarray(255 - ink).convert("P"))
    if kind == "P_colour_palette":
        rgb = np.stack([255 - ink, 255 - ink, np.full_like(ink, 255)], axis=-1)
        return encode(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    if kind in ("L_transparent_colour", "RGB_transparent_colour", "P_transparent_colour"):
        return transparent_colour_png(255 - ink, kind.split("_")[0])
    if kind == "I16_black_on_white":
        return encode(Image.fromarray((65535 - ink.astype(np.uint16) * 257).astype(np.uint16)))
    if kind == "1_bilevel":
        return encode(Image.fromarray(ink).convert("1"))
    raise ValueError(kind)


def transparent_colour_png(gray: np.ndarray, mode: str) -> bytes:
    """Dark ink on a white that the PNG's ``tRNS`` chunk marks transparent."""
    image = Image.fromarray(gray)
    if mode == "RGB":
        image = image.convert("RGB")
    elif mode == "P":
        image = image.convert("P")
    white = {"L": 255, "RGB": (255, 255, 255), "P": image.getpixel((0, 0))}[mode]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=white)
    return buffer.getvalue()


SAME_GEOMETRY_KINDS = [
    "L_white_on_black",
    "L_black_on_white",
    "RGB_black_on_white",
    "RGB_blue_on_white",
    "RGBA_opaque",
    "RGBA_ink_only_in_alpha",
    "RGBA_white_ink_in_alpha",
    "LA_ink_only_in_alpha",
    "P_palette",
    "P_colour_palette",
    "L_transparent_colour",
    "RGB_transparent_colour",
    "P_transparent_colour",
    "I16_black_on_white",
]
"""Kinds that decode to the same ink as ``L_white_on_black``, up to 8-bit rounding (grey from
colour is rounded to 8 bits before the ink is looked for)."""


def blank_png(value: int = 255, size: tuple[int, int] = (64, 64)) -> bytes:
    return encode(Image.new("L", size, value))


def transparent_png(size: tuple[int, int] = (64, 64)) -> bytes:
    return encode(Image.new("RGBA", size, (0, 0, 0, 0)))


def handmade_png(
    width: int, height: int, scanlines: bytes, color_type: int = 0, interlaced: bool = False
) -> bytes:
    """An 8-bit PNG assembled chunk by chunk around ``scanlines`` (filter bytes included)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, int(interlaced))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` but holds a tiny (valid) zlib stream.

    Pillow reads only the header on open, so this exercises the pixel limit the way a
    real decompression bomb does, without building one.
    """
    return handmade_png(width, height, b"\0" * 64)


def decompression_bomb_png() -> bytes:
    """A real bomb: 20000x20000 black pixels that compress to a few hundred KB."""
    return encode(Image.new("1", (20000, 20000), 0))


def oversize_png(size_bytes: int) -> bytes:
    """A PNG signature followed by noise, ``size_bytes`` long."""
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + np.random.default_rng(0).bytes(size_bytes - len(signature))


def truncated_png() -> bytes:
    data = png_variant("L_white_on_black")
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A complete PNG whose compressed pixel data is garbage."""
    data = bytearray(png_variant("L_white_on_black"))
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 200] = bytes(190)
    return bytes(data)


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(digit_ink((64, 64))).save(buffer, format="JPEG")
    return buffer.getvalue()


# --- TorchServe wire format -----------------------------------------------------------------


MAX_IMAGE_BYTES = yaml.safe_load((CONFIG_DIR / "model-config.yaml").read_text())["handler"]["max_image_bytes"]

# Bad requests for the endpoint: requests kwargs, expected status, expected message (None: any).
ERRORS = {
    "no file": (dict(data=b""), 400, "No file provided."),
    "wrong field": (
        dict(files={"image": ("d.png", png_variant("L_white_on_black"), "image/png")}),
        400,
        "No file provided.",
    ),
    "jpeg": (dict(files={"file": ("d.jpg", jpeg_bytes(), "image/jpeg")}), 415, "Filetype not supported."),
    "json": (dict(json={"image": "aGk="}), 415, "Filetype not supported."),
    "text": (dict(data="hello", headers={"Content-Type": "text/plain"}), 415, "Filetype not supported."),
    "truncated": (
        dict(data=truncated_png(), headers={"Content-Type": "image/png"}),
        400,
        "Problem reading file.",
    ),
    "corrupt": (dict(files={"file": ("d.png", corrupt_png(), "image/png")}), 400, "Problem reading file."),
    "too many bytes": (dict(data=oversize_png(MAX_IMAGE_BYTES + 10)), 413, None),
    "too many pixels": (dict(data=png_header_only(5000, 5000)), 413, None),
    "decompression bomb": (dict(files={"file": ("b.png", decompression_bomb_png(), "image/png")}), 413, None),
    "blank": (dict(data=blank_png(255)), 422, None),
}


def ts_request(
    request_id: str, name: str, value: Any, content_type: str = "image/png", **headers: str
) -> dict[str, Any]:
    """One request as the frontend hands it to ``Service.predict`` (raw values as bytearray)."""
    if isinstance(value, bytes):
        value = bytearray(value)
    headers = {"Content-Type": content_type, **headers}
    return {
        "requestId": request_id.encode(),
        "headers": [{"name": key.encode(), "value": value.encode()} for key, value in headers.items()],
        "parameters": [{"name": name, "contentType": content_type, "value": value}],
    }


def decode_predict_response(message: bytes) -> tuple[int, str, list[dict[str, Any]]]:
    """Parse ``create_predict_response`` output: batch code, message, one dict per request."""
    offset = 0

    def integer() -> int:
        nonlocal offset
        (value,) = struct.unpack_from("!i", message, offset)
        offset += 4
        return value

    def blob() -> bytes:
        nonlocal offset
        length = integer()
        value = message[offset : offset + length]
        offset += length
        return bytes(value)

    code, text = integer(), blob().decode()
    responses = []
    while True:
        length = integer()
        if length == -1:
            break
        request_id = bytes(message[offset : offset + length]).decode()
        offset += length
        content_type = blob().decode()
        status = integer()
        phrase = blob().decode()
        headers = {blob().decode(): blob().decode() for _ in range(integer())}
        body = blob()
        responses.append(
            {
                "id": request_id,
                "content_type": content_type,
                "status": status,
                "phrase": phrase,
                "headers": headers,
                "body": body,
            }
        )
    return code, text, responses


# --- the seed contract -----------------------------------------------------------------------


def assert_prediction(response: requests.Response | dict[str, Any]) -> dict[str, Any]:
    """A 200 JSON answer in the seed's shape: the digit and ten probabilities that sum to one,
    the digit being the most probable. Takes an HTTP response, or a decoded TorchServe
    worker reply (``decode_predict_response`` plus its parsed ``json``). Returns the body."""
    if isinstance(response, requests.Response):
        status, content_type = response.status_code, response.headers.get("content-type")
        body = response.json() if status == 200 else response.text
    else:
        status, content_type, body = response["status"], response["content_type"], response["json"]
    assert status == 200, body
    assert content_type == "application/json"
    assert set(body) == {"prediction", "percentages"}
    assert isinstance(body["prediction"], int) and 0 <= body["prediction"] <= 9
    assert len(body["percentages"]) == 10
    assert sum(body["percentages"]) == pytest.approx(1.0, abs=1e-5)
    assert body["prediction"] == max(range(10), key=body["percentages"].__getitem__)
    return body


# --- a real TorchServe ----------------------------------------------------------------------


@dataclass
class Server:
    """A TorchServe a test started with ``scripts/serve.py``, as a user would."""

    torchserve: TorchServe
    mar: Path

    @property
    def home(self) -> Path:
        return self.torchserve.home

    @property
    def inference(self) -> str:
        return self.torchserve.inference_url

    @property
    def management(self) -> str:
        return self.torchserve.management_url

    @property
    def predict_url(self) -> str:
        return self.torchserve.predict_url()


def serve(action: str, home: Path, *args: str) -> subprocess.CompletedProcess:
    """``python scripts/serve.py <action>`` in ``home``, with ``home/tmp`` as its TMPDIR."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(TMPDIR=str(home / "tmp"), TEMP=str(home / "tmp"))
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "serve.py"), action, *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


def start_server(home: Path, config: Path, store: Path) -> Server:
    """``config`` moved to free loopback ports (``derive_config``), started by ``serve.py``."""
    (home / "tmp").mkdir(parents=True)
    derive_config(config, home / "config.properties", store)
    server = Server(
        TorchServe(home, Path("config.properties"), Path("logs"), tmp=home / "tmp"), store / "digit.mar"
    )
    started = serve("start", home, "--config", "config.properties", "--logs", "logs", "--timeout", "120")
    if started.returncode != 0:
        server.torchserve.stop()
        pytest.fail(f"serve.py start failed:\n{started.stdout}\n{started.stderr}")
    return server


def stop_server(server: Server) -> None:
    stopped = serve("stop", server.home, "--config", "config.properties", "--logs", "logs")
    server.torchserve.kill()
    assert stopped.returncode == 0, stopped.stderr
