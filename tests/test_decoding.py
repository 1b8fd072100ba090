"""PNG decoding: libspng for plain 8-bit PNGs, Pillow for the rest, the same pixels either way,
and no upload, however mangled, that takes the process down."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR
from PIL import Image
from serving_support import SAME_GEOMETRY_KINDS, handmade_png, png_variant

from digit_classifier.runtime import preprocessing

PLAIN_KINDS = {kind for kind in SAME_GEOMETRY_KINDS if kind.split("_")[0] in ("L", "RGB", "RGBA")}
PLAIN_KINDS -= {"L_transparent_colour", "RGB_transparent_colour"}


def assert_both_decoders_agree(data: bytes) -> None:
    assert preprocessing._is_plain(data)
    assert np.array_equal(preprocessing._decode_plain(data), preprocessing._decode_with_pillow(data))


@pytest.mark.parametrize("kind", [*SAME_GEOMETRY_KINDS, "1_bilevel"])
def test_plain_flavours_go_to_libspng_and_decode_to_pillows_pixels(kind: str) -> None:
    data = png_variant(kind)
    if kind in PLAIN_KINDS:
        assert_both_decoders_agree(data)
    else:
        assert not preprocessing._is_plain(data)


def test_drawn_canvases_decode_to_pillows_pixels() -> None:
    canvases = sorted((DATA_DIR / "drawn-digits-dev").glob("*/*/*.png"))[::10]
    if not canvases:
        pytest.skip("no drawn-digits-dev beside the project")
    for path in canvases:
        assert_both_decoders_agree(path.read_bytes())


ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
"""Each Adam7 pass: first column, first row, column step, row step."""


def random_png(pixels: np.ndarray, color_type: int, interlaced: bool, rng: np.random.Generator) -> bytes:
    """``pixels`` as scanlines with random filter types (0 to 4): the decoder's unfiltering,
    not Pillow's encoder, decides the pixels."""
    passes = [pixels[y::dy, x::dx] for x, y, dx, dy in ADAM7] if interlaced else [pixels]
    rows = [bytes([rng.integers(5)]) + row.tobytes() for image in passes if image.size for row in image]
    height, width = pixels.shape[:2]
    return handmade_png(width, height, b"".join(rows), color_type, interlaced)


@pytest.mark.parametrize("interlaced", [False, True], ids=["progressive", "interlaced"])
@pytest.mark.parametrize("color_type,channels", [(0, 1), (2, 3), (6, 4)], ids=["grey", "rgb", "rgba"])
def test_every_filter_and_interlacing_decodes_to_pillows_pixels(
    color_type: int, channels: int, interlaced: bool
) -> None:
    rng = np.random.default_rng(color_type * 2 + interlaced)
    for _ in range(10):
        height, width = rng.integers(1, 40, size=2)
        pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8).squeeze(
            -1 if channels == 1 else ()
        )
        assert_both_decoders_agree(random_png(pixels, color_type, interlaced, rng))


@pytest.mark.parametrize("size", [(5000, 1), (1, 5000), (4000, 3)])
def test_long_thin_images_are_read(size: tuple[int, int]) -> None:
    line = Image.new("L", size, 0)
    line.paste(255, (0, 0, max(1, size[0] // 3), max(1, size[1] // 3)))
    buffer = io.BytesIO()
    line.save(buffer, format="PNG")
    assert preprocessing.png_to_field(buffer.getvalue()).max() > 0


FUZZ = textwrap.dedent(
    """
    import random
    from serving_support import SAME_GEOMETRY_KINDS, png_variant
    from digit_classifier.runtime.preprocessing import ImageInputError, png_to_field

    rng = random.Random(0)
    seeds = [png_variant(kind, (96, 96)) for kind in SAME_GEOMETRY_KINDS]
    counts = {"read": 0, "refused": 0}
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        how = rng.randrange(3)
        if how == 0:
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(8, len(data))] = rng.randrange(256)
        elif how == 1:
            data = data[: rng.randrange(8, len(data))]
        else:
            start = rng.randrange(33, len(data))
            data[start : start + 64] = rng.randbytes(len(data[start : start + 64]))
        try:
            field = png_to_field(bytes(data))
            assert field.shape == (28, 28) and 0 <= field.min() and field.max() <= 1
            counts["read"] += 1
        except ImageInputError:
            counts["refused"] += 1
    print(counts)
    """
)


def test_mangled_pngs_are_read_or_refused_and_never_crash_the_process() -> None:
    """Bit flips, truncations and garbage in the pixel data, 3,000 of them in a child
    process: each is read or refused with an ``ImageInputError`` (a 4xx); nothing crashes.
    (The two decoders may judge a damaged file differently: the module's docstring says how.)"""
    tests = Path(__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", FUZZ], cwd=tests, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    counts = ast.literal_eval(result.stdout.strip())
    assert counts["read"] > 100 and counts["refused"] > 100, counts
