"""Headless Chromium for the page's tests and screenshots (Playwright, Debian's chromium).

Playwright cannot download its own browser on these machines, so it drives the system's
``/usr/bin/chromium``. The flags keep a root, offline, screenless run quiet: without the
background-networking ones Chromium keeps trying hosts the network refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def launch(playwright: Any, executable: Path = CHROMIUM) -> Any:
    """A headless ``Browser`` from a ``sync_playwright()`` context."""
    return playwright.chromium.launch(executable_path=str(executable), headless=True, args=CHROMIUM_ARGS)
