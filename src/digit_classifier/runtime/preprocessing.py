"""What the network sees: the one definition shared by training, evaluation and serving.

MNIST digits are white ink on black, cropped to the ink, scaled into a 20x20 box keeping
the aspect ratio, and centred by centre of mass in a 28x28 field. The training images
already look like that, so training only calls :func:`normalize`. Images people send do
not: :func:`png_to_field` turns any PNG (grey, RGB, RGBA or palette, 1 to 16 bit, dark
ink on light or light on dark, ink in the alpha channel of a transparent canvas) into
the same form, which serving then normalises the same way, a batch at a time.

Speed matters here (it is most of a TorchServe worker's time per request): the ink is found
on the decoded 8-bit pixels, and floating point only starts on the digit's 20x20 box.
(torchvision's ``decode_png`` would decode faster, but in 0.29 it crashes the process on a
PNG whose image data is corrupt, so untrusted uploads go through Pillow.)
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, PngImagePlugin
from torchvision.transforms.v2 import functional as TF

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
IMAGE_SIZE = 28
DIGIT_BOX = 20
CENTER_OF_MASS = 14.0
"""Where MNIST puts a digit's centre of mass, in pixel indices (measured on the train set)."""

INK_THRESHOLD = 0.2
"""Ink level (0 to 1) above which a pixel counts as part of the digit when cropping."""
MIN_CONTRAST = 0.15
"""Below this difference between ink and background, an image counts as blank."""
WORK_SIDE = 560
"""Larger images are box-reduced to about this side before the ink is looked for."""
LUMA = (299, 587, 114)
"""ITU-R 601 weights, per mille, of red, green and blue in grey (as Pillow's ``convert("L")``)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageInputError(ValueError):
    """An image that cannot be classified; ``status`` is the HTTP status to answer with,
    ``reason`` a short label for it (the ``reason`` of the ``digit_refused_images_total`` metric)."""

    status = 400
    reason = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NoFileError(ImageInputError):
    status = 400
    reason = "no_file"


class UnsupportedTypeError(ImageInputError):
    status = 415
    reason = "unsupported_type"


class UnreadableImageError(ImageInputError):
    status = 400
    reason = "unreadable"


class ImageTooLargeError(ImageInputError):
    status = 413
    reason = "too_large"


class BlankImageError(ImageInputError):
    status = 422
    reason = "blank"


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on what a request may make the server decode."""

    max_bytes: int = 5 * 1024 * 1024
    max_pixels: int = 4096 * 4096


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Standardise ``[0, 1]`` ink images with the MNIST training mean and std."""
    return TF.normalize(images, mean=[MNIST_MEAN], std=[MNIST_STD])


@dataclass(frozen=True)
class Ink:
    """The digit as light on dark 8-bit ``values``; ``(values - floor) / contrast``, clipped
    to ``[0, 1]``, is its ink level."""

    values: np.ndarray
    floor: float
    contrast: float

    @property
    def threshold(self) -> float:
        return self.floor + INK_THRESHOLD * self.contrast


def png_to_field(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode PNG bytes into a ``28x28`` MNIST-style ink field in ``[0, 1]``, not yet normalised.

    Serving stacks these and normalises a whole batch at once.

    Raises:
        ImageInputError: a subclass whose ``status`` says what was wrong.
    """
    return center_like_mnist(ink_map(read_png(data, limits)))


def read_png(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Check a PNG, refusing anything too large from its header, then decode it fully.

    Returns ``(channels, height, width)`` 8-bit pixels: grey, grey and alpha, RGB or RGBA.
    Palettes, bilevel and 16-bit images, and images with a transparent colour, are
    converted to one of those.
    """
    if not data:
        raise NoFileError("No file provided.")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"File too large: {len(data)} bytes, limit {limits.max_bytes}.")
    if not data.startswith(PNG_SIGNATURE):
        raise UnsupportedTypeError("Filetype not supported.")
    width, height = _png_size(data)
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"Image too large: {width}x{height} pixels, limit {limits.max_pixels} pixels."
        )
    try:
        image = PngImagePlugin.PngImageFile(io.BytesIO(data))
        image.load()
    except Exception:
        raise UnreadableImageError("Problem reading file.") from None
    pixels = _eight_bit(image)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the ``IHDR`` chunk, read before anything is decoded.

    Pillow is opened on the PNG plugin directly (no format sniffing) once this has bounded
    the pixel count; its own decompression-bomb check allows far more pixels.
    """
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise UnreadableImageError("Problem reading file.")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise UnreadableImageError("Problem reading file.")
    return width, height


def _eight_bit(image: Image.Image) -> np.ndarray:
    """Pixels as L, LA, RGB or RGBA 8-bit values; deep grey scaled to 8 bits."""
    if image.mode.startswith("I"):
        values = np.asarray(image).astype(np.float32)
        full_scale = 255.0 if image.mode == "I" and values.max() <= 255 else 65535.0
        return np.clip(values * (255 / full_scale), 0, 255).round().astype(np.uint8)
    if image.mode in ("L", "LA", "RGB", "RGBA") and "transparency" not in image.info:
        return np.asarray(image)
    return np.asarray(image.convert("RGBA"))


def ink_map(pixels: np.ndarray) -> Ink:
    """Find the digit: light ink on a dark background, whatever the PNG's colours.

    Transparent pixels are first laid on a background that contrasts with the paint, so a
    canvas export whose ink lives only in the alpha channel keeps its ink. The background
    is then read off the image border and the polarity chosen from it.
    """
    gray = _reduce(_gray(pixels))
    background = _median(_border(gray))
    values = 255 - gray if background > 127.5 else gray
    floor = min(background, 255 - background)
    contrast = float(values.max()) - floor
    if contrast < MIN_CONTRAST * 255:
        raise BlankImageError("No digit found: the image is blank.")
    return Ink(values, floor, contrast)


def _gray(pixels: np.ndarray) -> np.ndarray:
    """One 8-bit grey plane; transparent pixels laid on a backdrop that contrasts with the paint."""
    channels = pixels.shape[0]
    gray = pixels[0] if channels < 3 else _luma(pixels)
    if channels not in (2, 4):
        return gray
    alpha = pixels[-1]
    if alpha.min() == 255:
        return gray
    coverage = float(alpha.sum(dtype=np.int64))
    if coverage == 0:
        raise BlankImageError("No digit found: the image is empty.")
    paint = float(np.dot(gray.ravel().astype(np.float32), alpha.ravel().astype(np.float32))) / coverage
    backdrop = 0 if paint >= 127.5 else 255
    mixed = gray.astype(np.uint16) * alpha + np.uint16(backdrop) * (255 - alpha.astype(np.uint16))
    return ((mixed + 127) // 255).astype(np.uint8)


def _luma(pixels: np.ndarray) -> np.ndarray:
    red, green, blue = (plane.astype(np.uint32) for plane in pixels[:3])
    return ((red * LUMA[0] + green * LUMA[1] + blue * LUMA[2] + 500) // 1000).astype(np.uint8)


def _reduce(gray: np.ndarray) -> np.ndarray:
    """Box-average a large image down to about :data:`WORK_SIDE` (as Pillow's ``reduce``)."""
    factor = max(gray.shape) // WORK_SIDE
    if factor < 2:
        return gray
    height, width = (side // factor * factor for side in gray.shape)
    blocks = gray[:height, :width].reshape(height // factor, factor, width // factor, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float32).round().astype(np.uint8)


def _border(values: np.ndarray) -> np.ndarray:
    return np.concatenate([values[0], values[-1], values[1:-1, 0], values[1:-1, -1]])


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D array without its generality (a tenth of its time here)."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    return (
        float(ordered[middle])
        if len(ordered) % 2
        else (float(ordered[middle - 1]) + float(ordered[middle])) / 2
    )


def center_like_mnist(ink: Ink) -> np.ndarray:
    """Crop to the ink, fit it in a 20x20 box, centre its mass in a ``28x28`` field.

    Pillow's bilinear resize is antialiased when it shrinks, as MNIST's own downscaling was.
    It runs on the 8-bit crop; the ink levels are computed on the (at most 20x20) result.
    """
    mask = ink.values > ink.threshold
    top, bottom = _extent(mask.any(axis=1))
    left, right = _extent(mask.any(axis=0))
    crop = np.ascontiguousarray(ink.values[top:bottom, left:right])
    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = Image.fromarray(crop).resize(size[::-1], Image.Resampling.BILINEAR)
    digit = np.asarray(resized, dtype=np.float32) - np.float32(ink.floor)
    peak = float(digit.max())
    if peak <= 0:
        raise BlankImageError("No digit found: the image is blank.")
    digit = np.clip(digit, 0, None, out=digit) * np.float32(1 / min(peak, ink.contrast))
    np.minimum(digit, 1, out=digit)
    row_mass, column_mass = digit.sum(axis=1), digit.sum(axis=0)
    total = float(row_mass.sum())
    top = _offset(float(row_mass @ POSITIONS[: size[0]]) / total, size[0])
    left = _offset(float(column_mass @ POSITIONS[: size[1]]) / total, size[1])
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    field[top : top + size[0], left : left + size[1]] = digit
    return field


POSITIONS = np.arange(IMAGE_SIZE, dtype=np.float32)


def _extent(occupied: np.ndarray) -> tuple[int, int]:
    """First and one past the last index where ``occupied`` is true."""
    first = int(occupied.argmax())
    if not occupied[first]:
        raise BlankImageError("No digit found: the image is blank.")
    return first, len(occupied) - int(occupied[::-1].argmax())


def _offset(center: float, length: int) -> int:
    """Where a patch must start so that its centre of mass lands on MNIST's."""
    return min(max(round(CENTER_OF_MASS - center), 0), IMAGE_SIZE - length)
