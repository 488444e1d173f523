"""Numbers as figures and report captions print them; standard library only, so a caption
job need not import torch or matplotlib to share them."""

from __future__ import annotations

import math

# Float32 softmax gives exactly 1.0 once every other class is below ~1e-7; from here on the
# digits carry no information.
_SATURATED = 0.999999


def format_percent(value: float, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals, rounded to nearest: 0.9731 -> 97.3%."""
    return f"{100 * value:.{digits}f}%"


def format_percent_down(value: float, digits: int | None = None, *, geq: str = "\u2265") -> str:
    """A probability as a percentage rounded *down*, so a confidence short of a target never
    shows as reaching it. ``digits=None``: one digit past the leading nines, at most four
    (99.8%, 99.94%, 99.996%). From 0.999999 up: ``"{geq} 99.9999%"`` (``geq=">="`` in ASCII)."""
    if value >= _SATURATED:
        return f"{geq} 99.9999%"
    percent = 100.0 * value
    if digits is None:
        fraction = f"{percent:.6f}".split(".")[1]
        digits = min(4, len(fraction) - len(fraction.lstrip("9")) + 1)
    scale = 10**digits
    return f"{math.floor(percent * scale + 1e-6) / scale:.{digits}f}%"
