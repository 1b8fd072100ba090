"""The handwriting-variants test set: built from the drawn digits, seeded, readable by the handler."""

from __future__ import annotations

from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_DIR, run_script
from PIL import Image

from digit_classifier.bench.samples import drawn_digits, indexed_samples
from digit_classifier.bench.variants import STYLES, variants, white_on_black
from digit_classifier.runtime.inference import prepare_batch
from digit_classifier.runtime.preprocessing import ImageLimits

DRAWN = DATA_DIR / "drawn-digits-dev"
pytestmark = pytest.mark.skipif(
    not (DRAWN / "index.csv").is_file(), reason=f"needs {DRAWN} (set DIGIT_DATA_DIR)"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("variants")
    result = run_script(
        "scripts/make_variants.py", "--data-dir", str(DATA_DIR), "--out", str(out), "--per-digit", "2"
    )
    assert "Wrote" in result.stdout
    return out


def test_every_kind_and_style_is_there(built: Path) -> None:
    samples = indexed_samples(built / "index.csv")
    kinds = Counter(sample.groups["variant"] for sample in samples)
    dev = Counter(sample.label for sample in drawn_digits(DRAWN))
    assert kinds == {"slashed_zero": dev[0], "crossed_seven": dev[7], "flagged_one": dev[1], "overshoot": 10}
    assert {sample.groups["style"] for sample in samples} == set(STYLES)
    labels = {kind: {s.label for s in samples if s.groups["variant"] == kind} for kind in kinds}
    assert labels == {
        "slashed_zero": {0},
        "crossed_seven": {7},
        "flagged_one": {1},
        "overshoot": {0, 4, 5, 7, 9},
    }


def test_the_same_seed_makes_the_same_images(built: Path) -> None:
    samples = indexed_samples(built / "index.csv")
    for number, (kind, label, ink) in enumerate(islice(variants(DRAWN, 2, seed=2026), 25)):
        assert (samples[number].groups["variant"], samples[number].label) == (kind, label)
        if samples[number].groups["style"] == "white_on_black":
            assert np.array_equal(np.asarray(Image.open(samples[number].path)), np.asarray(ink))


def test_strokes_are_added_to_the_dev_drawings(built: Path) -> None:
    zeros = [sample for sample in drawn_digits(DRAWN) if sample.label == 0][:5]
    slashed = sorted((built / "slashed_zero" / "0").glob("*white_on_black.png"))[:1]
    assert slashed, "the first zero is exported white on black"
    original = np.asarray(white_on_black(zeros[0]), dtype=np.int32)
    drawn = np.asarray(Image.open(slashed[0]).convert("L"), dtype=np.int32)
    assert (drawn >= original - 1).all() and (drawn - original > 128).sum() > 500


def test_the_handler_reads_every_image(built: Path) -> None:
    payloads = [path.read_bytes() for path in sorted(built.rglob("*.png"))]
    batch = prepare_batch(payloads, ImageLimits())
    assert not batch.errors and len(batch.positions) == len(payloads)
