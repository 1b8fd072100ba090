"""What the network sees: the one definition shared by training, evaluation and serving.

MNIST digits are white ink on black, cropped to the ink, scaled into a 20x20 box keeping
the aspect ratio, and centred by centre of mass in a 28x28 field. The training images
already look like that, so training only calls :func:`normalize`. Images people send do
not: :func:`png_to_digit` turns any PNG (grey, RGB, RGBA or palette, 1 to 16 bit, dark
ink on light or light on dark, ink in the alpha channel of a transparent canvas) into its
digit fitted in the box, :func:`center_like_mnist` centres a batch of those in their
fields, which serving then normalises the same way (:func:`png_to_field` does both for
one image).

Speed matters here (it is most of a TorchServe worker's own time per request): plain
8-bit PNGs, what canvases export, are decoded by libspng (``pyspng``), in about 0.6 of
Pillow's time, and everything else (palettes, grey and alpha, 1 to 16 bit, a transparent
colour) by Pillow; the two give the same pixels. (On damaged files they may disagree:
pyspng skips the CRC and Adler-32 checks, so it reads some files Pillow refuses, and it
refuses image data that ends early, which Pillow fills with zeros.) The ink is found on
the decoded 8-bit pixels, by the strongest value of each row and column; floating point
only starts on the digit's 20x20 box, and runs on a whole batch of boxes at once.
(torchvision's ``decode_png`` is fast too, but in 0.29 it crashes the process on a PNG
whose image data is corrupt.)
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyspng
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
REDUCING_GAP = 3.0
"""Pillow's ``reducing_gap``: from 3 on, its docs say, in most cases indistinguishable from a
full resample (here: the same accuracy on every evaluation set)."""
LUMA = (299, 587, 114)
"""ITU-R 601 weights, per mille, of red, green and blue in grey (as Pillow's ``convert("L")``)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLAIN_COLOR_TYPES = (0, 2, 6)
"""PNG colour types libspng decodes as they are: grey, RGB, RGBA (not grey and alpha)."""


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


def denormalize(images: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`normalize`, clamped to ``[0, 1]``: normalised images to look at."""
    return (images.float() * MNIST_STD + MNIST_MEAN).clamp(0, 1)


@dataclass(frozen=True)
class Ink:
    """Where the digit is in the 8-bit grey plane ``gray``: its ink level is
    ``(values - floor) / contrast``, clipped to ``[0, 1]``, where ``values`` is ``gray``, or
    ``255 - gray`` if the ink is ``dark``; ``rows`` and ``columns`` hold the strongest ink value
    of each row and column (what cropping needs, without a mask of the whole image)."""

    gray: np.ndarray
    dark: bool
    floor: float
    contrast: float
    rows: np.ndarray
    columns: np.ndarray

    @property
    def threshold(self) -> float:
        return self.floor + INK_THRESHOLD * self.contrast


@dataclass(frozen=True)
class Digit:
    """A digit cropped to its ink and fitted in the 20x20 box: light on dark 8-bit ``pixels``
    whose ink level is ``(pixels - floor) * gain``, clipped to ``[0, 1]``."""

    pixels: np.ndarray
    floor: float
    gain: float


def png_to_field(data: bytes, limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Decode PNG bytes into a ``28x28`` MNIST-style ink field in ``[0, 1]``, not yet normalised.

    Raises:
        ImageInputError: a subclass whose ``status`` says what was wrong.
    """
    return center_like_mnist([png_to_digit(data, limits)])[0]


def png_to_digit(data: bytes, limits: ImageLimits = ImageLimits()) -> Digit:
    """Decode PNG bytes and fit the digit in the 20x20 box; :func:`center_like_mnist` then
    centres a batch of them at once.

    Raises:
        ImageInputError: a subclass whose ``status`` says what was wrong.
    """
    return fit_digit(ink_map(read_png(data, limits)))


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
    pixels = _decode_plain(data) if _is_plain(data) else _decode_with_pillow(data)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def _is_plain(data: bytes) -> bool:
    """An 8-bit grey, RGB or RGBA PNG without a transparent colour (a ``tRNS`` chunk; a
    false match in the pixel data only sends the image to Pillow)."""
    return data[24] == 8 and data[25] in PLAIN_COLOR_TYPES and b"tRNS" not in data


def _decode_plain(data: bytes) -> np.ndarray:
    try:
        return pyspng.load(data)
    except Exception:
        raise UnreadableImageError("Problem reading file.") from None


def _decode_with_pillow(data: bytes) -> np.ndarray:
    try:
        image = PngImagePlugin.PngImageFile(io.BytesIO(data))
        image.load()
    except Exception:
        raise UnreadableImageError("Problem reading file.") from None
    return _eight_bit(image)


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the ``IHDR`` chunk, read before anything is decoded.

    Pillow is opened on the PNG plugin directly (no format sniffing) once this has bounded
    the pixel count; its own decompression-bomb check allows far more pixels.
    """
    if len(data) < 33 or data[12:16] != b"IHDR":
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
        return _array(image)
    return _array(image.convert("RGBA"))


def _array(image: Image.Image) -> np.ndarray:
    """``np.asarray`` of an 8-bit image, read-only; on images this small, the array
    interface costs more than the copy (as :func:`_image` for ``Image.fromarray``)."""
    bands = len(image.getbands())
    shape = (image.height, image.width) if bands == 1 else (image.height, image.width, bands)
    return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(shape)


def _image(gray: np.ndarray) -> Image.Image:
    """``Image.fromarray`` of a C-contiguous 8-bit grey plane."""
    return Image.frombuffer("L", gray.shape[::-1], gray, "raw", "L", 0, 1)


def ink_map(pixels: np.ndarray) -> Ink:
    """Find the digit: light ink on a dark background, whatever the PNG's colours.

    Transparent pixels are first laid on a background that contrasts with the paint, so a
    canvas export whose ink lives only in the alpha channel keeps its ink. The background
    is then read off the image border and the polarity chosen from it.
    """
    gray = _reduce(_gray(pixels))
    background = _median(_border(gray))
    dark = background > 127.5
    if dark:
        rows, columns = 255 - gray.min(axis=1), 255 - gray.min(axis=0)
    else:
        rows, columns = gray.max(axis=1), gray.max(axis=0)
    floor = min(background, 255 - background)
    contrast = float(rows.max()) - floor
    if contrast < MIN_CONTRAST * 255:
        raise BlankImageError("No digit found: the image is blank.")
    return Ink(gray, dark, floor, contrast, rows, columns)


def _gray(pixels: np.ndarray) -> np.ndarray:
    """One 8-bit grey plane; transparent pixels laid on a backdrop that contrasts with the paint.

    The drawing page previews an upload on a backdrop chosen by the same rule
    (``backdropFor`` in ``web/static/app.js``): keep the two alike.
    """
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
    """Box-average a large image down to about :data:`WORK_SIDE` (as Pillow's ``reduce``),
    keeping at least one row and one column of a long thin one."""
    factor = min(max(gray.shape) // WORK_SIDE, min(gray.shape))
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


def fit_digit(ink: Ink) -> Digit:
    """Crop to the ink and fit it in a 20x20 box, keeping the aspect ratio.

    Pillow's bilinear resize is antialiased when it shrinks, as MNIST's own downscaling was;
    a large crop is first box-reduced to at least :data:`REDUCING_GAP` times the box (0.7 of
    the time on a canvas, the same accuracy on every evaluation set). It runs on the 8-bit
    crop; ink levels are computed later, on the (at most 20x20) result.
    A crop that already fits the box exactly (an MNIST digit's) is kept as it is, which is
    what the resize would return; its brightest pixel is the image's, since every pixel
    above the threshold is inside the crop.
    """
    threshold = ink.threshold
    top, bottom = _extent(ink.rows > threshold)
    left, right = _extent(ink.columns > threshold)
    crop = ink.gray[top:bottom, left:right]
    crop = 255 - crop if ink.dark else np.ascontiguousarray(crop)
    height, width = crop.shape
    scale = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return Digit(crop, ink.floor, 1 / ink.contrast)
    pixels = _array(_image(crop).resize(size, Image.Resampling.BILINEAR, reducing_gap=REDUCING_GAP))
    peak = int(pixels.max()) - ink.floor
    if peak <= 0:
        raise BlankImageError("No digit found: the image is blank.")
    return Digit(pixels, ink.floor, 1 / min(peak, ink.contrast))


def center_like_mnist(digits: Sequence[Digit]) -> np.ndarray:
    """Centre each digit's mass in a ``28x28`` field, as MNIST did: ``(N, 28, 28)`` ink levels.

    The arithmetic runs on the whole batch at once, each digit in the corner of a 20x20 box
    whose padding holds no ink.
    """
    boxes = np.zeros((len(digits), DIGIT_BOX, DIGIT_BOX), dtype=np.float32)
    for box, digit in zip(boxes, digits, strict=True):
        box[: digit.pixels.shape[0], : digit.pixels.shape[1]] = digit.pixels
    boxes -= np.array([digit.floor for digit in digits], dtype=np.float32)[:, None, None]
    np.clip(boxes, 0, None, out=boxes)
    boxes *= np.array([digit.gain for digit in digits], dtype=np.float32)[:, None, None]
    np.minimum(boxes, 1, out=boxes)
    heights, widths = np.array([digit.pixels.shape for digit in digits], dtype=np.intp).reshape(-1, 2).T
    row_mass, column_mass = boxes.sum(axis=2), boxes.sum(axis=1)
    total = row_mass.sum(axis=1, dtype=np.float64)
    tops = _offsets((row_mass @ POSITIONS[:DIGIT_BOX]) / total, heights)
    lefts = _offsets((column_mass @ POSITIONS[:DIGIT_BOX]) / total, widths)
    fields = np.zeros((len(digits), IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for field, box, top, left, height, width in zip(fields, boxes, tops, lefts, heights, widths, strict=True):
        field[top : top + height, left : left + width] = box[:height, :width]
    return fields


POSITIONS = np.arange(IMAGE_SIZE, dtype=np.float32)


def _extent(occupied: np.ndarray) -> tuple[int, int]:
    """First and one past the last index where ``occupied`` is true."""
    first = int(occupied.argmax())
    if not occupied[first]:
        raise BlankImageError("No digit found: the image is blank.")
    return first, len(occupied) - int(occupied[::-1].argmax())


def _offsets(centers: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Where each patch must start so that its centre of mass lands on MNIST's."""
    return np.clip(np.rint(CENTER_OF_MASS - centers), 0, IMAGE_SIZE - lengths).astype(np.intp)
