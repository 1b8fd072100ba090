"""Benchmark-only handler: the production handler with the model forward pass left out.

Requests are decoded and validated exactly as in production (``DigitHandler.preprocess``)
and answered through the same ``postprocess``; only ``inference`` is replaced by fixed
uniform probabilities. Compared with ``noop_handler`` and the full handler, it splits
the time per request into TorchServe, preprocessing and the network. ``scripts/archive.py
--handler`` packs ``digit_handler.py`` beside it. Never used in production archives.
"""

from __future__ import annotations

from typing import Any

import torch
from digit_handler import DigitHandler

from digit_classifier.runtime.inference import PreparedBatch
from digit_classifier.runtime.networks import NUM_CLASSES


class PreprocessOnlyHandler(DigitHandler):
    """``DigitHandler`` whose inference step skips the network."""

    def inference(self, data: PreparedBatch, *args: Any, **kwargs: Any) -> PreparedBatch:
        data.probabilities = torch.full((len(data.images), NUM_CLASSES), 1 / NUM_CLASSES)
        return data
