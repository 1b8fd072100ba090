"""Handwriting variants MNIST under-represents, drawn as a canvas exports them: a test set.

Four kinds, each a common way of writing a digit that MNIST's writers rarely used:

* ``slashed_zero``, ``crossed_seven``, ``flagged_one``: a pen-drawn digit of the
  drawn-digits dev set (writers that no training image comes from) with the stroke people
  add drawn onto it at the pen's own width: a slash through the 0 (Ø), a crossbar on the
  7's stem, a flag at the top of the 1 and, on most, a foot under it;
* ``overshoot``: digits drawn by this module from stroke templates, on a 280x280 canvas with
  a round pen, whose strokes run past where they meet (a 4's crossbar past the stem, a 7's
  diagonal starting above its bar, a 5's bar starting left of its stem, a 0 whose loop
  overlaps itself, a 9's tail starting above its loop), with random size, slant and shape.

Every image is exported one of the five ways a canvas is exported (:data:`STYLES`).
Training never sees any of it: the augmentation draws its strokes onto MNIST digits at 28x28,
and the dev drawings are kept for measurement only. Everything is seeded, so the same
command makes the same files.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digit_classifier.bench.samples import DRAWN_DEV, Sample, drawn_digits, indexed_samples, mnist_test_pngs

VARIANTS_DIR = Path("data/drawn-variants")
"""Where ``scripts/make_variants.py`` writes the variants set, and the measurements read it."""
CANVAS = 280
SUPERSAMPLE = 4
STYLES = ("white_on_black", "black_on_white", "black_in_alpha", "white_in_alpha", "blue_on_white")
"""Opaque white ink on black, opaque black on white, black ink on a transparent canvas, white
ink on a transparent canvas, and coloured ink on white."""
BLUE = (30, 64, 175)

Point = tuple[float, float]
Stroke = list[Point]


# --- drawing ---------------------------------------------------------------------------------


def draw_strokes(ink: Image.Image, strokes: list[Stroke], width: float) -> Image.Image:
    """``ink`` (L, white on black) with ``strokes`` drawn on it by a round pen, antialiased."""
    big = Image.new("L", (CANVAS * SUPERSAMPLE, CANVAS * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(big)
    pen = max(2, round(width * SUPERSAMPLE))
    for stroke in strokes:
        points = [(x * SUPERSAMPLE, y * SUPERSAMPLE) for x, y in stroke]
        draw.line(points, fill=255, width=pen, joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=255)
    added = big.resize((CANVAS, CANVAS), Image.Resampling.LANCZOS)
    return Image.fromarray(np.maximum(np.asarray(ink), np.asarray(added)))


def export(ink: Image.Image, style: str) -> Image.Image:
    """The white-on-black ``ink`` as a canvas export in ``style``."""
    values = np.asarray(ink)
    if style == "white_on_black":
        return ink
    if style == "black_on_white":
        return Image.fromarray(255 - values)
    if style in ("black_in_alpha", "white_in_alpha"):
        paint = 0 if style == "black_in_alpha" else 255
        rgb = np.full((*values.shape, 3), paint, dtype=np.uint8)
        return Image.fromarray(np.dstack([rgb, values]), mode="RGBA")
    if style == "blue_on_white":
        alpha = values[..., None].astype(np.float32) / 255
        rgb = 255 * (1 - alpha) + np.array(BLUE, dtype=np.float32) * alpha
        return Image.fromarray(rgb.round().astype(np.uint8), mode="RGB")
    raise ValueError(f"unknown style {style!r}")


def pen_width(ink: Image.Image) -> float:
    """The drawing's stroke width in pixels: twice the erosions it takes to wear it away."""
    mask = ink.point(lambda value: 255 if value > 127 else 0)
    total = max(1, np.count_nonzero(np.asarray(mask)))
    for erosions in range(1, 40):
        mask = mask.filter(ImageFilter.MinFilter(3))
        if np.count_nonzero(np.asarray(mask)) < 0.02 * total:
            return 2.0 * erosions
    return 40.0


def ink_box(values: np.ndarray) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the pixels that are ink."""
    rows = np.flatnonzero((values > 127).any(axis=1))
    cols = np.flatnonzero((values > 127).any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def ink_x(values: np.ndarray, y: float, band: int = 6) -> float | None:
    """Mean x of the ink in the rows around ``y``."""
    rows = values[max(0, int(y) - band) : int(y) + band + 1] > 127
    xs = np.nonzero(rows)[1]
    return float(xs.mean()) if xs.size else None


# --- strokes added to dev drawings -----------------------------------------------------------


def slash(values: np.ndarray, rng: np.random.Generator) -> list[Stroke]:
    """Ø: from below the 0's lower left to above its upper right."""
    left, top, right, bottom = ink_box(values)
    width, height = right - left, bottom - top
    reach = rng.uniform(-0.05, 0.15, size=4)
    start = (left - reach[0] * width, bottom + reach[1] * height)
    end = (right + reach[2] * width, top - reach[3] * height)
    return [[start, end]]


def crossbar(values: np.ndarray, rng: np.random.Generator) -> list[Stroke]:
    """A bar across the 7's stem, a little below the middle of its height."""
    left, top, right, bottom = ink_box(values)
    width, height = right - left, bottom - top
    y = top + rng.uniform(0.45, 0.62) * height
    x = ink_x(values, y) or (left + right) / 2
    half = max(rng.uniform(0.2, 0.32) * width, 0.12 * height)
    tilt = math.tan(math.radians(rng.uniform(-6, 6))) * half
    return [[(x - half * rng.uniform(0.8, 1.2), y + tilt), (x + half, y - tilt)]]


def flag_and_foot(values: np.ndarray, rng: np.random.Generator) -> list[Stroke]:
    """A flag down and left from the 1's top and, on most, a foot across its base."""
    _, top, _, bottom = ink_box(values)
    height = bottom - top
    top_x = ink_x(values, top + 2, band=3) or CANVAS / 2
    flag_end = (top_x - rng.uniform(0.18, 0.34) * height, top + rng.uniform(0.12, 0.3) * height)
    strokes = [[flag_end, (top_x, top)]]
    if rng.random() < 0.7:
        base_x = ink_x(values, bottom - 2, band=3) or top_x
        half = rng.uniform(0.14, 0.24) * height
        strokes.append([(base_x - half, bottom), (base_x + half, bottom)])
    return strokes


ADDED: dict[str, tuple[int, Callable[[np.ndarray, np.random.Generator], list[Stroke]]]] = {
    "slashed_zero": (0, slash),
    "crossed_seven": (7, crossbar),
    "flagged_one": (1, flag_and_foot),
}


def white_on_black(sample: Sample) -> Image.Image:
    image = Image.open(sample.path).convert("L")
    return (
        image if sample.groups.get("style") != "black_on_white" else Image.fromarray(255 - np.asarray(image))
    )


# --- digits drawn from templates -------------------------------------------------------------


def arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, points: int = 24) -> Stroke:
    """Points along an elliptic arc, angles in degrees, y pointing down as on a canvas."""
    angles = np.radians(np.linspace(start, end, points))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


def overshoot_templates(rng: np.random.Generator) -> dict[int, list[Stroke]]:
    """Each digit's strokes in a unit square (y down), with the overshoot that names the kind."""
    u = rng.uniform
    return {
        4: [[(0.55, 0.05), (0.12, 0.62), (0.95 + u(0, 0.05), 0.6)], [(0.68, 0.25), (0.66, 1.0)]],
        7: [[(0.08, 0.15), (0.95, 0.14)], [(0.82, 0.02 + u(0, 0.06)), (0.6, 0.5), (0.42, 1.0)]],
        5: [
            [(0.32, 0.15), (0.28, 0.48), *arc(0.5, 0.68, 0.3, 0.26, -140, 150)[1:]],
            [(0.18 - u(0, 0.08), 0.15), (0.9, 0.12)],
        ],
        0: [arc(0.5, 0.5, 0.36, 0.48, -100, 300 + u(0, 40), points=40)],
        9: [
            arc(0.45, 0.3, 0.3, 0.25, 20, 380, points=32),
            [(0.75, 0.02 + u(0, 0.08)), (0.72, 0.6), (0.62, 1.0)],
        ],
    }


def place(strokes: list[Stroke], rng: np.random.Generator) -> list[Stroke]:
    """Unit-square strokes scaled, slanted, rotated, jittered and put on the canvas."""
    height = rng.uniform(150, 220)
    width = height * rng.uniform(0.6, 0.85)
    angle, shear = math.radians(rng.uniform(-10, 10)), rng.uniform(-0.25, 0.1)
    cx, cy = CANVAS / 2 + rng.uniform(-25, 25), CANVAS / 2 + rng.uniform(-20, 20)
    placed = []
    for stroke in strokes:
        points = []
        for x, y in stroke:
            x, y = (x - 0.5 + shear * (y - 0.5)) * width, (y - 0.5) * height
            x, y = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
            points.append((cx + x + rng.normal(0, 2), cy + y + rng.normal(0, 2)))
        placed.append(points)
    return placed


# --- the set ---------------------------------------------------------------------------------


def variants(drawn_dir: Path, overshoot_per_digit: int, seed: int) -> Iterator[tuple[str, int, Image.Image]]:
    """``(kind, label, white-on-black image)`` for every image of the set."""
    rng = np.random.default_rng(seed)
    dev = drawn_digits(drawn_dir)
    for kind, (label, strokes_for) in ADDED.items():
        for sample in (s for s in dev if s.label == label):
            ink = white_on_black(sample)
            values = np.asarray(ink)
            yield kind, label, draw_strokes(ink, strokes_for(values, rng), pen_width(ink))
    blank = Image.new("L", (CANVAS, CANVAS), 0)
    for _ in range(overshoot_per_digit):
        for label, strokes in overshoot_templates(rng).items():
            yield "overshoot", label, draw_strokes(blank, place(strokes, rng), rng.uniform(12, 26))


def build(drawn_dir: Path, out_dir: Path, overshoot_per_digit: int = 20, seed: int = 2026) -> list[Sample]:
    """Write the set as PNGs under ``out_dir`` with an ``index.csv``; returns its samples."""
    rows = []
    for number, (kind, label, ink) in enumerate(variants(drawn_dir, overshoot_per_digit, seed)):
        style = STYLES[number % len(STYLES)]
        path = Path(kind) / str(label) / f"{number:04d}_{style}.png"
        (out_dir / path).parent.mkdir(parents=True, exist_ok=True)
        export(ink, style).save(out_dir / path)
        rows.append((path.as_posix(), label, kind, style))
    index = out_dir / "index.csv"
    with index.open("w", newline="") as file:
        csv.writer(file).writerows([("path", "label", "variant", "style"), *rows])
    return indexed_samples(index)


def variant_samples(drawn_dir: Path, out_dir: Path) -> list[Sample]:
    """The set in ``out_dir``, built there first when it is not."""
    index = out_dir / "index.csv"
    return indexed_samples(index) if index.is_file() else build(drawn_dir, out_dir)


def evaluation_sets(data_dir: Path, cache_dir: Path, variants_dir: Path) -> dict[str, list[Sample]]:
    """The sets accuracy is reported on: MNIST test, and the drawn digits and their variants
    where the drawn digits exist (``variants_dir`` caches the variants)."""
    sets = {"mnist_test": mnist_test_pngs(data_dir, cache_dir)}
    drawn_dir = data_dir / DRAWN_DEV
    if (drawn_dir / "index.csv").is_file():
        sets["drawn_digits_dev"] = drawn_digits(drawn_dir)
        sets["variants"] = variant_samples(drawn_dir, variants_dir)
    return sets
