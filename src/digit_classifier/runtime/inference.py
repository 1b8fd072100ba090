"""From request bytes to response dicts, shared by the TorchServe handler and ``predict``.

An exported model is a folder (or the inside of a ``.mar``) holding ``network.json``
(the network's name and keyword arguments) and ``weights.pt`` (a plain state dict), so
it loads with ``torch.load(weights_only=True)`` and no training code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from digit_classifier.runtime.networks import NUM_CLASSES, build_network
from digit_classifier.runtime.precision import CALIBRATION_FILE, Int8Ranges, convert, input_dtype
from digit_classifier.runtime.preprocessing import (
    Digit,
    ImageInputError,
    ImageLimits,
    NoFileError,
    UnreadableImageError,
    UnsupportedTypeError,
    center_like_mnist,
    normalize,
    png_to_digit,
)

WEIGHTS_FILE = "weights.pt"
NETWORK_FILE = "network.json"
METADATA_FILE = "metadata.json"
MODEL_CONFIG_FILE = "model-config.yaml"

DEFAULT_PRECISION = "float32"

logger = logging.getLogger(__name__)


def handler_settings(model_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``handler`` section of a model config (``model-config.yaml``), empty when absent."""
    return dict((model_config or {}).get("handler") or {})


def served_precision(settings: Mapping[str, Any]) -> str:
    """The ``precision`` a handler section asks for: float32, bfloat16 or int8."""
    return str(settings.get("precision", DEFAULT_PRECISION))


def set_torch_threads(settings: Mapping[str, Any]) -> None:
    """Apply the handler section's ``torch_num_threads``, before any network is loaded (oneDNN
    builds its kernels for the thread count of their first call)."""
    threads = settings.get("torch_num_threads")
    if threads:
        torch.set_num_threads(int(threads))


def network_from_state(spec: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Build the network ``spec`` describes, load ``state_dict`` strictly, set eval mode."""
    network = build_network(**spec)
    network.load_state_dict(state_dict, strict=True)
    return network.eval()


def load_network(model_dir: str | Path, device: torch.device | str = "cpu") -> nn.Module:
    """Load an exported network (``network.json`` + ``weights.pt``) from ``model_dir``."""
    model_dir = Path(model_dir)
    spec = json.loads((model_dir / NETWORK_FILE).read_text())
    state_dict = torch.load(model_dir / WEIGHTS_FILE, map_location=device, weights_only=True)
    return network_from_state(spec, state_dict).to(device)


def for_inference(
    network: nn.Module,
    precision: str = DEFAULT_PRECISION,
    ranges: Int8Ranges | None = None,
    batch_sizes: Iterable[int] = (1,),
) -> nn.Module:
    """Fold batch norms into their convolutions, move each ReLU next to its convolution, lay
    the weights out channels-last, and convert to ``precision``
    (:mod:`digit_classifier.runtime.precision`; int8 runs fastest at ``batch_sizes``).

    Folding and the layout are exact up to float rounding (probabilities agree with the
    trained network to ~1e-6); with :func:`predict_probabilities` feeding channels-last
    images, the layout oneDNN convolves fastest (``scripts/bench_inference.py``).
    """
    network = relu_before_pooling(fold_batch_norms(network.eval()))
    return convert(network.to(memory_format=torch.channels_last), precision, ranges, batch_sizes)


def load_for_serving(
    model_dir: str | Path,
    settings: Mapping[str, Any] | None,
    device: torch.device | str = "cpu",
    max_batch_size: int = 1,
) -> nn.Module:
    """The network of an exported model folder as the handler serves it (:func:`for_inference`),
    in the handler section's ``precision`` (float32 by default), fastest for batches of 1 to
    ``max_batch_size`` (TorchServe's ``batchSize``)."""
    model_dir = Path(model_dir)
    precision = served_precision(settings or {})
    ranges = torch.load(model_dir / CALIBRATION_FILE, weights_only=True) if precision == "int8" else None
    batch_sizes = range(1, max(1, max_batch_size) + 1)
    return for_inference(load_network(model_dir, device), precision, ranges, batch_sizes)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Merge every eval-mode ``BatchNorm2d`` of a ``Sequential`` into the ``Conv2d`` before it,
    and drop it (each ``Sequential`` is rebuilt without the merged norms).

    A max-pool between the two is no obstacle when every channel's scale is positive, since
    ``max(s * x + b) = s * max(x) + b`` for ``s > 0`` (a ``pool_first`` network).
    """
    for name, child in module.named_children():
        setattr(module, name, fold_batch_norms(child))
    if not isinstance(module, nn.Sequential):
        return module
    layers = list(module)
    folded: set[int] = set()
    for index in range(1, len(layers)):
        conv = _foldable_conv(layers, index)
        if conv is not None:
            layers[conv] = fuse_conv_bn_eval(layers[conv], layers[index])
            folded.add(index)
    return nn.Sequential(*(layer for index, layer in enumerate(layers) if index not in folded))


def relu_before_pooling(module: nn.Module) -> nn.Module:
    """Swap every max-pool followed by a ReLU, in place.

    The same function (``relu(max(x)) = max(relu(x))``), but after folding each convolution
    is then directly followed by its ReLU, which int8 quantisation fuses into one kernel
    (``quantized::conv2d_relu``): 0.9x the int8 forward pass at batch 4, where the ReLUs ran
    as three more operators (docs/performance.md).
    """
    for child in module.children():
        relu_before_pooling(child)
    if isinstance(module, nn.Sequential):
        for index in range(len(module) - 1):
            if isinstance(module[index], nn.MaxPool2d) and isinstance(module[index + 1], nn.ReLU):
                module[index], module[index + 1] = module[index + 1], module[index]
    return module


def _foldable_conv(sequence: Sequence[nn.Module], index: int) -> int | None:
    """The position of the ``Conv2d`` that the batch norm at ``index`` can fold into, if any."""
    norm = sequence[index]
    if not isinstance(norm, nn.BatchNorm2d):
        return None
    if isinstance(sequence[index - 1], nn.Conv2d):
        return index - 1
    pooled = index >= 2 and isinstance(sequence[index - 1], nn.MaxPool2d)
    if pooled and isinstance(sequence[index - 2], nn.Conv2d):
        scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
        return index - 2 if bool((scale > 0).all()) else None
    return None


def batch_size_from_properties(system_properties: Mapping[str, Any]) -> int:
    """TorchServe's ``batchSize`` for this model, as the worker gets it (``batch_size`` in
    ``context.system_properties``); 1 when unset."""
    return int(system_properties.get("batch_size") or 1)


def limits_from_config(handler_config: Mapping[str, Any] | None) -> ImageLimits:
    """Read ``max_image_bytes`` and ``max_image_pixels`` from a model-config handler section."""
    config = handler_config or {}
    defaults = ImageLimits()
    return ImageLimits(
        max_bytes=int(config.get("max_image_bytes", defaults.max_bytes)),
        max_pixels=int(config.get("max_image_pixels", defaults.max_pixels)),
    )


@dataclass
class PreparedBatch:
    """The decodable images of a batch and, by request position, what was wrong with the rest.

    ``images[k]`` belongs to request ``positions[k]``; ``probabilities`` is filled by
    inference, one row per image. The handler records how long decoding and the forward
    pass took (its metrics).
    """

    size: int
    images: torch.Tensor
    positions: list[int] = field(default_factory=list)
    errors: dict[int, ImageInputError] = field(default_factory=dict)
    probabilities: torch.Tensor | None = None
    preprocess_ms: float = 0.0
    inference_ms: float = 0.0


def payload_to_digit(payload: object, limits: ImageLimits) -> Digit:
    """Turn one request payload into its fitted digit or raise an ``ImageInputError``.

    Only raw bytes can be a PNG: TorchServe hands over ``str`` for ``text/*`` bodies and
    parsed JSON for ``application/json``, which are refused as unsupported types.
    """
    if payload is None:
        raise NoFileError("No file provided.")
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    if not isinstance(payload, (bytes, bytearray)):
        raise UnsupportedTypeError("Filetype not supported.")
    return png_to_digit(bytes(payload), limits)


def prepare_batch(payloads: Sequence[object], limits: ImageLimits) -> PreparedBatch:
    """Decode every payload; a bad one is recorded by position and never fails the others.

    The decoded digits are centred, stacked and normalised once for the whole batch.
    """
    digits: list[Digit] = []
    positions: list[int] = []
    errors: dict[int, ImageInputError] = {}
    for position, payload in enumerate(payloads):
        try:
            digits.append(payload_to_digit(payload, limits))
        except ImageInputError as error:
            errors[position] = error
        except Exception:
            logger.exception("Unexpected failure decoding request %d", position)
            errors[position] = UnreadableImageError("Problem reading file.")
        else:
            positions.append(position)
    images = normalize(torch.from_numpy(center_like_mnist(digits)).unsqueeze(1))
    return PreparedBatch(len(payloads), images, positions, errors)


def predict_probabilities(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities (``Nx10``, on the CPU) for a batch of normalised images."""
    if len(images) == 0:
        return torch.empty(0, NUM_CLASSES)
    device = next((parameter.device for parameter in model.parameters()), torch.device("cpu"))
    inputs = images.to(device, input_dtype(model)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        logits = model(inputs)
    return torch.softmax(logits.float(), dim=1).cpu()


def prediction_response(digit: int, probabilities: list[float]) -> dict[str, Any]:
    """The success body: the most likely digit and all ten probabilities."""
    return {"prediction": digit, "percentages": probabilities}


def error_response(error: ImageInputError) -> dict[str, Any]:
    """The error body; ``status`` repeats the HTTP status for clients that only see JSON."""
    return {"error": error.message, "status": error.status}


def status_phrase(status: int) -> str:
    return HTTPStatus(status).phrase


def batch_responses(batch: PreparedBatch) -> list[dict[str, Any]]:
    """One response per request, in request order (the batch's tensor read out once)."""
    responses: list[dict[str, Any]] = [{} for _ in range(batch.size)]
    for position, error in batch.errors.items():
        responses[position] = error_response(error)
    if batch.probabilities is not None:
        rows = batch.probabilities.tolist()
        digits = batch.probabilities.argmax(dim=1).tolist()
        for position, digit, row in zip(batch.positions, digits, rows, strict=True):
            responses[position] = prediction_response(digit, row)
    return responses
