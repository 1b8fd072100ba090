"""The number format the served network computes in: float32, bfloat16 or int8.

Set by ``precision`` in the handler section of ``model-config.yaml``, so the same archive
can be served either way and the offline predictor matches the server.

* ``float32``: exact.
* ``bfloat16``: weights and activations in bfloat16, logits back in float32; fast where the
  CPU has AVX-512 BF16 or AMX (here, Zen 4), slow where it emulates them.
* ``int8``: static post-training quantisation with PyTorch's own ``torch.ao`` tools and its
  ``x86`` backend (oneDNN and FBGEMM kernels, VNNI instructions): per-channel int8 weights,
  int8 activations whose ranges ``scripts/archive.py`` measures on calibration images
  (:func:`measure_int8_ranges`) and the archive carries (``calibration.pt``); the worker
  quantises with them when it starts, into one frozen graph per batch size it will see
  (:class:`GraphPerBatchSize`).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from digit_classifier.runtime.preprocessing import IMAGE_SIZE

PRECISIONS = ("float32", "bfloat16", "int8")
CALIBRATION_FILE = "calibration.pt"
"""The int8 activation ranges: the state of the observers after calibration, tensors only."""
OBSERVER = "activation_post_process"
"""What ``prepare_fx`` names the observers it inserts."""

Int8Ranges = Mapping[str, torch.Tensor]


def convert(
    network: nn.Module,
    precision: str,
    ranges: Int8Ranges | None = None,
    batch_sizes: Iterable[int] = (1,),
) -> nn.Module:
    """``network`` (eval mode, batch norms folded) in ``precision``; ``ranges`` are the
    activation ranges int8 quantises with (:func:`measure_int8_ranges`), ``batch_sizes``
    the sizes it gets a graph of its own for (any other size runs too, more slowly)."""
    if precision == "float32":
        return network
    if precision == "bfloat16":
        return network.to(torch.bfloat16)
    if precision == "int8":
        if ranges is None:
            raise ValueError(f"precision int8 needs activation ranges ({CALIBRATION_FILE} in the archive)")
        return quantize_int8(network, ranges, batch_sizes)
    raise ValueError(f"Unknown precision {precision!r}; choose one of {PRECISIONS}")


def _examples(batch: int) -> torch.Tensor:
    return torch.zeros(batch, 1, IMAGE_SIZE, IMAGE_SIZE).contiguous(memory_format=torch.channels_last)


@contextmanager
def _fx_quantization() -> Iterator[None]:
    """The ``x86`` backend, and FX's warnings that it will move to torchao silenced: it is still
    PyTorch's own way to run int8 convolutions without compiling."""
    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _prepared(network: nn.Module) -> nn.Module:
    """``network`` with observers inserted (FX is imported here: only int8 needs it)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    return prepare_fx(copy.deepcopy(network), get_default_qconfig_mapping("x86"), (_examples(1),))


def measure_int8_ranges(network: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The observers' state after ``network`` has seen the normalised ``images``.

    Measured once, when archiving: histogram observers over thousands of images take
    seconds, which every worker start would otherwise pay; loading the result takes none.
    """
    with _fx_quantization():
        prepared = _prepared(network)
        with torch.inference_mode():
            prepared(images.contiguous(memory_format=torch.channels_last))
    return {name: value for name, value in prepared.state_dict().items() if OBSERVER in name}


def quantize_int8(network: nn.Module, ranges: Int8Ranges, batch_sizes: Iterable[int] = (1,)) -> nn.Module:
    """Static int8 quantisation of ``network`` by FX graph mode with the measured ``ranges``,
    then traced and frozen by TorchScript, once for each of ``batch_sizes``
    (:class:`GraphPerBatchSize`).

    The quantised FX graph calls a dozen Python modules per batch, which at batch 4 costs as
    much as its int8 arithmetic; frozen TorchScript runs the same kernels without them, about
    twice as fast in an ad hoc comparison.
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    with _fx_quantization():
        prepared = _prepared(network)
        loaded = prepared.load_state_dict(ranges, strict=False)
        missing = [name for name in loaded.missing_keys if OBSERVER in name]
        unexpected = [name for name in loaded.unexpected_keys if OBSERVER in name]
        if missing or unexpected:
            detail = f"lacks {missing[0]}" if missing else f"has {unexpected[0]}, which this network lacks"
            raise ValueError(
                f"{CALIBRATION_FILE} {detail}: measured on another network, or archived before "
                "each ReLU was moved next to its convolution? Archive it again."
            )
        quantized = convert_fx(prepared)
        return GraphPerBatchSize({size: _frozen(quantized, size) for size in sorted(set(batch_sizes))})


def _frozen(quantized: nn.Module, batch_size: int) -> torch.jit.ScriptModule:
    """A frozen TorchScript copy of ``quantized``, called once with ``batch_size`` images so
    that its convolutions keep their kernels for that shape.

    Each copy is traced from a deep copy, so that it has packed weights of its own whatever
    tracing and freezing share between graphs: the kernel is kept with the packed weights.
    """
    examples = _examples(batch_size)
    with torch.inference_mode():
        graph = torch.jit.freeze(torch.jit.trace(copy.deepcopy(quantized), examples))
        graph(examples)
    return graph


class GraphPerBatchSize(nn.Module):
    """The int8 network as one frozen graph per batch size, each called with its own size.

    PyTorch's oneDNN int8 convolution (``quantized::conv2d_relu`` on the ``x86`` engine)
    keeps the kernel it builds for its first call's input shape and torch thread count, and
    only that one: any other shape gets a kernel built afresh at every call. TorchServe's
    batches come in every size up to ``batchSize``, so with a single graph all but one size
    paid that, a batch of 4 half as much again (docs/performance.md, "Eighth session").
    Hence: set the thread count before building this, and keep it.

    Each graph holds its own copy of the weights (about 100 KB at the default width) and is
    traced and frozen once per size when loading; the answers are the same to the bit
    whichever graph computes them. A size without a graph of its own runs on the largest.
    """

    def __init__(self, graphs: Mapping[int, nn.Module]) -> None:
        super().__init__()
        if not graphs:
            raise ValueError("GraphPerBatchSize needs at least one batch size")
        self.graphs = nn.ModuleDict({str(size): graph for size, graph in graphs.items()})
        self._by_size = dict(graphs)
        """The same graphs by ``int`` size: a ``ModuleDict`` lookup costs 3 us a call."""
        self._largest = max(graphs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        by_size = self._by_size
        return by_size.get(images.shape[0], by_size[self._largest])(images)


def input_dtype(model: nn.Module) -> torch.dtype:
    """What the model takes: bfloat16 for a bfloat16 network, else float32 (int8 networks
    quantise their float input themselves)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
