"""The number format the served network computes in: float32, bfloat16 or int8.

Set by ``precision`` in the handler section of ``model-config.yaml``, so the same archive
can be served either way and the offline predictor matches the server.

* ``float32``: exact.
* ``bfloat16``: weights and activations in bfloat16, logits back in float32; fast where the
  CPU has AVX-512 BF16 or AMX (here, Zen 4), slow where it emulates them.
* ``int8``: static post-training quantisation with PyTorch's own ``torch.ao`` tools and its
  ``x86`` backend (oneDNN and FBGEMM kernels, VNNI instructions): per-channel int8 weights,
  int8 activations whose ranges are measured on calibration images the archive carries
  (``calibration.pt``, made by ``scripts/archive.py``), when the worker starts.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

PRECISIONS = ("float32", "bfloat16", "int8")
CALIBRATION_FILE = "calibration.pt"
"""``uint8`` ink fields ``(N, 28, 28)``, normalised at load like any served image."""


def convert(network: nn.Module, precision: str, calibration: torch.Tensor | None = None) -> nn.Module:
    """``network`` (eval mode, batch norms folded) in ``precision``; ``calibration`` is the
    normalised ``(N, 1, 28, 28)`` batch int8 measures its activation ranges on."""
    if precision == "float32":
        return network
    if precision == "bfloat16":
        return network.to(torch.bfloat16)
    if precision == "int8":
        if calibration is None:
            raise ValueError(f"precision int8 needs calibration images ({CALIBRATION_FILE} in the archive)")
        return quantize_int8(network, calibration)
    raise ValueError(f"Unknown precision {precision!r}; choose one of {PRECISIONS}")


def quantize_int8(network: nn.Module, calibration: torch.Tensor) -> nn.Module:
    """Static int8 quantisation of ``network`` by FX graph mode, calibrated on ``calibration``,
    then traced and frozen by TorchScript.

    The quantised FX graph calls a dozen Python modules per batch, which at batch 4 costs as
    much as its int8 arithmetic; frozen TorchScript runs the same kernels without them, about
    twice as fast (``scripts/bench_inference.py``). The FX API warns that it will move to
    torchao; it is still PyTorch's own way to run int8 convolutions without compiling, so
    its deprecation warnings are silenced here.
    """
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    torch.backends.quantized.engine = "x86"
    images = calibration.contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(network), get_default_qconfig_mapping("x86"), (images[:1],))
        with torch.inference_mode():
            prepared(images)
            quantized = convert_fx(prepared)
            return torch.jit.freeze(torch.jit.trace(quantized, images[:4]))


def input_dtype(model: nn.Module) -> torch.dtype:
    """What the model takes: bfloat16 for a bfloat16 network, else float32 (int8 networks
    quantise their float input themselves)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
