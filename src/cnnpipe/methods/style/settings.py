"""The style stage's options that are checked while the workflow is parsed (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
SMOOTHINGS = ("none", "softmax")
STYLE_COLORS = ("none", "start", "content")
# Pixel steps: L-BFGS scales its own steps, Adam moves each pixel by about lr per step.
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


def check_style_batch(style_cfg: Mapping) -> int | str:
    """``style.batch``: a positive integer or "auto"; more than one pair per batch needs
    ``style.optimizer: adam`` (L-BFGS's dot products would couple the pairs of a batch)."""
    setting, optimizer = style_cfg.get("batch", 1), style_cfg["optimizer"]
    if setting == "auto":
        return setting
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"style.batch must be a positive integer or 'auto', got {setting!r}")
    if setting > 1 and optimizer != "adam":
        raise ValueError(f"style.batch is {setting} but style.optimizer is {optimizer!r}: pairs share a batch "
                         "with adam only (L-BFGS's dot products would couple them); set style.optimizer: adam "
                         "or style.batch: 1")
    return setting


def check_style_colors(style_cfg: Mapping) -> str:
    """``style.style_colors``: one of STYLE_COLORS; not together with ``style.preserve_color``
    (the style's palette and the photo's are opposite asks) or a noise start (it is the start)."""
    setting = style_cfg.get("style_colors", "none")
    if setting not in STYLE_COLORS:
        raise ValueError(f"style.style_colors must be one of {list(STYLE_COLORS)}, got {setting!r}")
    if setting != "none" and style_cfg.get("preserve_color"):
        raise ValueError(f"style.style_colors is {setting!r} (the style's colours) but style.preserve_color is true "
                         "(the photo's colours): set one of them")
    if setting != "none" and style_cfg.get("init", "content") != "content":
        raise ValueError(f"style.style_colors is {setting!r}, which starts from the recoloured photo, but style.init "
                         f"is {style_cfg.get('init')!r}: set init: content or style_colors: none")
    return setting
