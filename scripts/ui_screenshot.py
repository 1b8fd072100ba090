"""Draw a digit on a running UI in headless Chromium and save a screenshot of the page.

    python scripts/ui_screenshot.py [--url http://127.0.0.1:8000/] [--out docs/screenshot.png]

Used for the image in docs/serving.md; needs the dev extra (Playwright) and a Chromium binary.
The PNG is reduced to a 64-colour palette to keep it small in the repository.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from digit_classifier.bench.variants import arc
from digit_classifier.web.browser import CHROMIUM, launch

THREE = [arc(138, 95, 52, 52, -165, 95, 14), arc(138, 192, 58, 58, -95, 160, 14)]
"""A "3" as two strokes, in canvas pixels (0 to 280)."""


def capture(url: str, out: Path, chromium: Path, width: int, height: int) -> str:
    with sync_playwright() as playwright:
        browser = launch(playwright, chromium)
        page = browser.new_page(viewport={"width": width, "height": height}, color_scheme="light")
        page.goto(url)
        box = page.locator("#pad").bounding_box()
        scale = box["width"] / 280
        for stroke in THREE:
            page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=8)
            page.mouse.up()
        page.wait_for_selector("#result[data-state=ready], #result[data-state=error]", timeout=20_000)
        answer = page.inner_text("#message")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=out, full_page=True, animations="disabled")
        browser.close()
    Image.open(out).convert("RGB").quantize(64, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)
    return answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    parser.add_argument("--chromium", type=Path, default=CHROMIUM)
    parser.add_argument("--size", default="960x760", help="viewport WIDTHxHEIGHT")
    args = parser.parse_args(argv)
    width, height = map(int, args.size.split("x"))
    answer = capture(args.url, args.out, args.chromium, width, height)
    print(f"Wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB); page says: {answer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
