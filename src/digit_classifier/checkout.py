"""The checkout's top-level folders, for the code that runs from a checkout (an editable
install): training, archiving, the local servers. The ``.mar`` never carries this module."""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
CONFIGS = CHECKOUT / "configs"
"""Hydra's config groups, and ``torchserve/``, nginx's and Prometheus's templates."""
HANDLERS = CHECKOUT / "handlers"
