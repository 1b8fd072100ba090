"""Where a benchmark's results go: a JSON report and, beside it, its Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(path: Path, report: dict[str, Any], markdown: str | None = None) -> None:
    """Write ``report`` to ``path`` and any ``markdown`` (printed too) beside it as ``.md``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    if markdown is None:
        print(f"Wrote {path}")
        return
    path.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"Wrote {path} and {path.with_suffix('.md')}")
