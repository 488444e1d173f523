"""Names made safe for file paths."""

from __future__ import annotations

import re


def file_slug(name: str) -> str:
    """A file name for a layer or unit name: characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "_"
