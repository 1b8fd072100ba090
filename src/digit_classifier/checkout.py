"""Where things are for the code that runs from a checkout (an editable install): training,
archiving, the local servers, the measurements. The ``.mar`` never carries this module."""

from __future__ import annotations

import os
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
CONFIGS = CHECKOUT / "configs"
"""Hydra's config groups, and ``torchserve/``, nginx's and Prometheus's templates."""
HANDLERS = CHECKOUT / "handlers"


def data_dir() -> Path:
    """The folder holding ``MNIST/raw/`` (and the drawn digits): ``DIGIT_DATA_DIR``, else
    ``./data``, where torchvision downloads MNIST when it is missing."""
    return Path(os.environ.get("DIGIT_DATA_DIR", "data"))
