"""MNIST digit classifier: Lightning + Hydra training, TorchServe serving.

The modules ``networks`` and ``preprocessing`` import only torch, torchvision, numpy
and Pillow, so the TorchServe handler can ship them in a ``.mar`` without the
training stack.
"""

__version__ = "0.1.0"
