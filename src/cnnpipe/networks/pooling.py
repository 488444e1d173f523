"""Adaptive average pooling as a matrix product, so that its CUDA backward is deterministic
(the native kernel adds atomically); the CPU result is the same to float rounding."""

from __future__ import annotations

import torch
from torch import nn


def _pool_matrix(out_size: int, in_size: int, like: torch.Tensor) -> torch.Tensor:
    """[out_size, in_size]: row o averages inputs floor(o * in / out) ... ceil((o + 1) * in / out) - 1,
    the bins of ``nn.AdaptiveAvgPool2d``."""
    o = torch.arange(out_size, device=like.device)
    start = torch.div(o * in_size, out_size, rounding_mode="floor")
    stop = torch.div((o + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
    i = torch.arange(in_size, device=like.device)
    inside = (i[None] >= start[:, None]) & (i[None] < stop[:, None])
    return inside.to(like.dtype) / (stop - start)[:, None].to(like.dtype)


class MatmulAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products, P_h x P_w^T, with fixed averaging
    matrices (``_pool_matrix``). Same values (to float rounding; exactly when the input already
    has the output size, as VGG's 7x7 map at 224 px), but a backward that is deterministic on
    CUDA: adaptive_avg_pool2d's CUDA backward adds atomically, which changes the result bits
    from run to run when the output is larger than the input (VGG's 4x4 map at 128 px pooled
    to 7x7) and which ``torch.use_deterministic_algorithms(True, warn_only=True)`` only warns
    about."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out_h, out_w = (self.output_size, self.output_size) if isinstance(self.output_size, int) else self.output_size
        rows = _pool_matrix(height if out_h is None else out_h, height, x)
        cols = _pool_matrix(width if out_w is None else out_w, width, x)
        return rows @ x @ cols.T

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def _deterministic_pooling(net: nn.Module) -> nn.Module:
    """Replace each ``nn.AdaptiveAvgPool2d`` that does not pool to 1x1 (VGG's and AlexNet's
    before their classifiers) by :class:`MatmulAdaptiveAvgPool2d`, in place, under the same
    name. Global pooling (1x1) is a mean, whose backward is deterministic already."""
    for name, module in list(net.named_modules()):
        if type(module) is nn.AdaptiveAvgPool2d and module.output_size not in (1, (1, 1)):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent), child, MatmulAdaptiveAvgPool2d(module.output_size))
    return net
