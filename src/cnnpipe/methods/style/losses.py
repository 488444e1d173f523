"""The terms of style transfer's objective: Gram matrices, the style, content and total-variation losses, smoothing, the range penalty, and colour preservation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# L-BFGS pixels: see FreePixels and _range_weight (5: at most 0.1 outside [0, 1] at the
# start's strongest gradient; 25 and 100 gave higher final losses on both benchmarks' nets).
RANGE_STIFFNESS = 5.0
# ITU-R BT.601 RGB -> YIQ; Y is the luminance that colour preservation takes from the result.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def gram_matrix(features: Tensor) -> Tensor:
    """[B, C, H, W] -> [B, C, C]: F F^T / (C H W), which does not depend on the image size."""
    if features.dim() != 4:
        raise ValueError(f"gram_matrix needs [B, C, H, W] features, got shape {tuple(features.shape)}")
    flat = features.flatten(2)  # a view in NCHW and in channels_last
    return torch.bmm(flat, flat.transpose(1, 2)) / flat[0].numel()


class _GramMSE(torch.autograd.Function):
    """mean_cd (gram(a) - target)^2 per sample, with a one-matmul backward.

    d/dF mean((F F^T / n - A)^2) = 4 D F / (C^2 n) with D = G - A symmetric, where autograd
    would spend two matmuls on the Gram and a few elementwise passes on the MSE.
    """

    @staticmethod
    def forward(ctx, a: Tensor, target: Tensor) -> Tensor:
        diff = gram_matrix(a) - target
        ctx.save_for_backward(a, diff)
        return diff.square().mean((1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor):
        a, diff = ctx.saved_tensors
        batch, channels, height, width = a.shape
        scale = grad.view(-1, 1, 1) * (2.0 / (channels * channels * a[0].numel()))
        sym = (diff + diff.transpose(1, 2)) * scale  # = 4 D / (C^2 n) up to rounding
        if a.is_contiguous(memory_format=torch.channels_last) and not a.is_contiguous():
            # Keep the gradient in the activation's layout, so the conv backward needs no copy.
            rows = a.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
            grad_a = torch.bmm(rows, sym).view(batch, height, width, channels).permute(0, 3, 1, 2)
        else:
            grad_a = torch.bmm(sym, a.flatten(2)).view_as(a)
        return grad_a, None


def gram_loss(features: Tensor, target: Tensor) -> Tensor:
    """Per-sample mean squared difference between the Gram matrix of ``features`` and
    ``target`` ([C, C] or [B, C, C]): the style term of one layer, shape [B]."""
    if features.dim() != 4:
        raise ValueError(f"style layer output must be [B, C, H, W], got shape {tuple(features.shape)}")
    channels = features.shape[1]
    if target.shape[-2:] != (channels, channels):
        raise ValueError(f"Gram target has shape {tuple(target.shape)} for {channels} channels")
    target = target.to(features.dtype).expand(features.shape[0], channels, channels)
    return _GramMSE.apply(features, target)


def smooth_features(features: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """[B, C, H, W] -> at every position the softmax over the C channels of ``features / scale``,
    times C (mean 1 over the channels, so the scale does not depend on the layer's width)."""
    if features.dim() != 4:
        raise ValueError(f"smoothing needs [B, C, H, W] features, got shape {tuple(features.shape)}")
    return torch.softmax(features / scale, dim=1) * features.shape[1]


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """Per-sample mean squared difference of feature maps: the content term of one layer, [B]."""
    if features.shape[1:] != target.shape[-(features.dim() - 1):]:
        raise ValueError(f"content features {tuple(features.shape)} do not match target {tuple(target.shape)}")
    return (features - target).square().flatten(1).mean(1)


def tv_loss(x: Tensor) -> Tensor:
    """Per-sample mean squared difference between vertical and horizontal neighbours (smooth,
    so L-BFGS can use it; independent of the image size), [B]."""
    rows = (x[..., 1:, :] - x[..., :-1, :]).square().flatten(1).mean(1)
    cols = (x[..., :, 1:] - x[..., :, :-1]).square().flatten(1).mean(1)
    return rows + cols


def preserve_colors(result: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's chroma (YIQ), so only the style's patterns
    transfer, not its palette (Gatys et al. 2016, "Preserving color ...", the simple variant)."""
    matrix = torch.tensor(_RGB_TO_YIQ, dtype=result.dtype, device=result.device)
    if result.shape != content.shape:
        raise ValueError(f"result {tuple(result.shape)} and content {tuple(content.shape)} differ in shape")
    to_yiq = lambda x: torch.einsum("dc,...chw->...dhw", matrix, x)  # noqa: E731
    yiq = torch.cat([to_yiq(result)[..., :1, :, :], to_yiq(content.to(result))[..., 1:, :, :]], dim=-3)
    return torch.einsum("dc,...chw->...dhw", torch.linalg.inv(matrix), yiq).clamp(0, 1)


def range_penalty(x: Tensor) -> Tensor:
    """Per-sample sum of squared excursions below 0 and above 1, [B]."""
    return (F.relu(x - 1).square() + F.relu(-x).square()).flatten(1).sum(1)
