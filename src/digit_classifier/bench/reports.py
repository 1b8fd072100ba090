"""Where a benchmark's results go: a JSON report and, beside it, its Markdown table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(path: Path, report: dict[str, Any], markdown: str) -> None:
    """Write ``report`` to ``path`` and ``markdown`` to the same name with ``.md``; print both paths."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown)
    print(markdown)
    print(f"Wrote {path} and {path.with_suffix('.md')}")
