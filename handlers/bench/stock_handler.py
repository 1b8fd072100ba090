"""Benchmark-only handler: our network served the way TorchServe's own MNIST example serves one.

TorchServe's ``examples/image_classifier/mnist/mnist_handler.py`` (an ``ImageClassifier``,
whose preprocessing is ``VisionHandler``'s): per image, Pillow decodes it and torchvision's
``ToTensor`` and ``Normalize`` turn it into a tensor; one ``torch.stack``; the forward pass;
``argmax``. It does none of what ``DigitHandler`` does beyond that: no centring or
rescaling of the digit, no polarity or transparency handling, no size limits, no
per-request errors (one bad image fails the whole batch) and no probabilities in the
answer. ``VisionHandler`` itself is not imported, since it needs captum for explanations.
The network, its loading and the torch threads are ours, so that only the handler's work
differs. Never used in production archives.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torchvision import transforms
from ts.handler_utils.timer import timed
from ts.torch_handler.base_handler import BaseHandler

from digit_classifier.runtime.inference import (
    batch_size_from_properties,
    handler_settings,
    load_for_serving,
    set_torch_threads,
)
from digit_classifier.runtime.precision import input_dtype
from digit_classifier.runtime.preprocessing import MNIST_MEAN, MNIST_STD


class StockMNISTHandler(BaseHandler):
    """``mnist_handler.py``'s pipeline on the exported network (``initialize`` without ``super()``:
    the ``.mar`` holds weights and ``network.json``, not a pickled model)."""

    image_processing = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    )

    def initialize(self, context: Any) -> None:
        settings = handler_settings(context.model_yaml_config)
        set_torch_threads(settings)
        self.context = context
        self.device = torch.device("cpu")
        properties = context.system_properties
        self.model = load_for_serving(
            Path(properties["model_dir"]), settings, max_batch_size=batch_size_from_properties(properties)
        )
        self.initialized = True

    @timed
    def preprocess(self, data: list[dict[str, Any]]) -> torch.Tensor:
        images = []
        for row in data:
            image = row.get("data") or row.get("body") or row.get("file")
            images.append(self.image_processing(Image.open(io.BytesIO(image))))
        return torch.stack(images).to(self.device, input_dtype(self.model))

    @timed
    def postprocess(self, data: torch.Tensor) -> list[int]:
        return data.argmax(1).tolist()
