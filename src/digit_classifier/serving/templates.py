"""Config templates of the checkout (``configs/nginx``, ``configs/prometheus``) filled in.

A template is the program's own config syntax with ``{{name}}`` placeholders, so that it
reads as the real file does; nginx's ``$variables`` and braces stay untouched. A
placeholder alone on its line is a block: each line of its value gets that line's indent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
BLOCK = re.compile(r"^([ \t]*)\{\{(\w+)\}\}[ \t]*$", re.MULTILINE)


def fill(template: Path, values: Mapping[str, object]) -> str:
    """``template`` with each ``{{name}}`` replaced by ``values[name]``; every name must be given."""
    text = template.read_text()
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{template}: no value for {missing}")

    def block(match: re.Match) -> str:
        indent, name = match.groups()
        return "\n".join(indent + line if line else line for line in str(values[name]).splitlines())

    text = BLOCK.sub(block, text)
    return PLACEHOLDER.sub(lambda match: str(values[match.group(1)]), text)
