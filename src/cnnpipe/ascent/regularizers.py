"""Regularizers: per-sample penalties [B] on the untransformed image, pixels in [0, 1].

``ascend`` subtracts their weighted sum from the objective. Blurring is not a penalty but an
operation on the parameterization (``ImageParam.blur_``, every ``blur_every`` steps).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor

__all__ = ["l1", "l2", "tv", "resolve_regularizers"]


def l1(x: Tensor, center: float = 0.0) -> Tensor:
    """sum_ij |x_ij - center| per sample, over channels too. ``x`` is the image the model sees
    before transforms, pixels in [0, 1]; with center 0 the penalty pulls towards black."""
    return (x - center).abs().reshape(x.shape[0], -1).sum(1)


def l2(x: Tensor, center: float = 0.0) -> Tensor:
    """sum_ij (x_ij - center)^2 per sample (squared L2 norm), pixels in [0, 1]."""
    return (x - center).pow(2).reshape(x.shape[0], -1).sum(1)


def tv(x: Tensor) -> Tensor:
    """Anisotropic total variation per sample: sum of |differences| between vertical and
    horizontal neighbours, over channels too, pixels in [0, 1]."""
    rows = (x[..., 1:, :] - x[..., :-1, :]).abs().reshape(x.shape[0], -1).sum(1)
    cols = (x[..., :, 1:] - x[..., :, :-1]).abs().reshape(x.shape[0], -1).sum(1)
    return rows + cols


_REGULARIZERS = {"l1": l1, "l2": l2, "tv": tv}


def resolve_regularizers(regularizers) -> list[tuple[float, Callable[[Tensor], Tensor]]]:
    """``None``, ``{"l1": w, "tv": w}`` or pairs ``(w, fn or name)`` -> pairs ``(w, fn)``; zero weights in a
    mapping are dropped."""
    if regularizers is None:
        return []
    if isinstance(regularizers, Mapping):
        unknown = sorted(set(regularizers) - set(_REGULARIZERS))
        if unknown:
            raise ValueError(f"unknown regularizers {unknown}; choose from {sorted(_REGULARIZERS)}")
        return [(float(w), _REGULARIZERS[name]) for name, w in regularizers.items() if w]
    resolved = []
    for item in regularizers:
        weight, fn = item
        resolved.append((float(weight), _REGULARIZERS[fn] if isinstance(fn, str) else fn))
    return resolved
