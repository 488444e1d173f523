"""A blend of style images: its weights, and how file names and captions name it (torch-free)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path


def blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """A style blend's weights normalized to sum 1 (None: ``count`` equal weights). Each must be
    a positive finite number."""
    if weights is None:
        weights = [1.0] * count
    weights = list(weights)
    if len(weights) != count:
        raise ValueError(f"style blend: {len(weights)} weights for {count} style images")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                math.isfinite(weight) and weight > 0):
            raise ValueError(f"style blend: weights must be positive numbers, got {weight!r}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


def _stem(path) -> str:
    return Path(str(path)).stem


def blend_part(styles: Sequence[str], weights: Sequence[float] = (1.0,)) -> str:
    """The style part of a pair's name: the style image's stem, or for a blend the stems joined
    by ``+``, each followed by its weight in percent when the weights differ
    (``starry70+scream30``; equal weights: ``starry+scream``)."""
    stems = [_stem(path) for path in styles]
    if len(stems) == 1 or len(set(weights)) == 1:
        return "+".join(stems)
    return "+".join(f"{stem}{100 * weight:.3g}" for stem, weight in zip(stems, weights))


def blend_label(styles: Sequence[str], weights: Sequence[float] = (1.0,)) -> str:
    """The style (or blend) as captions say it: ``'starry'``, or ``70% 'starry' + 30% 'scream'``."""
    if len(styles) == 1:
        return repr(_stem(styles[0]))
    return " + ".join(f"{100 * weight:.3g}% {_stem(path)!r}" for path, weight in zip(styles, weights))


def pair_name(content: str, style: str | Sequence[str], weights: Sequence[float] = (1.0,)) -> str:
    """``<content>__<style>`` from the two images' names (file stems); for a blend of styles
    ``<content>__<style1><w1>+<style2><w2>`` (see ``blend_part``)."""
    styles = [style] if isinstance(style, (str, os.PathLike)) else list(style)
    return f"{_stem(content)}__{blend_part(styles, weights)}"
