"""The style's palette given to the photo before the transfer: colour histogram matching in the
style's principal colour axes (Gatys et al. 2017, "Controlling perceptual factors in neural
style transfer", turned around: there the style takes the photo's colours)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _pixels(images: Sequence[Tensor]) -> Tensor:
    """[N, 3]: every pixel of every image ([3, H, W] or [1, 3, H, W])."""
    return torch.cat([image.reshape(3, -1).T for image in images]).double()


def _match_quantiles(values: Tensor, reference: Tensor) -> Tensor:
    """``values`` [N] mapped monotonically onto ``reference``'s distribution: the value of rank
    r becomes the reference's quantile (r + 0.5) / N, linearly interpolated."""
    ref = reference.sort().values
    ranks = torch.empty_like(values)
    ranks[values.argsort(stable=True)] = torch.arange(values.numel(), dtype=values.dtype)
    at = ((ranks + 0.5) / values.numel() * ref.numel() - 0.5).clamp(0, ref.numel() - 1)
    low = at.floor().long()
    high = (low + 1).clamp(max=ref.numel() - 1)
    return torch.lerp(ref[low], ref[high], at - low)


def match_colors(content: Tensor, styles: Tensor | Sequence[Tensor]) -> Tensor:
    """``content`` [3, H, W] or [1, 3, H, W] in [0, 1] with the colour distribution of the style
    image(s) (a blend pools their pixels): each pixel is written in the style's principal colour
    axes (the eigenvectors of its 3 x 3 colour covariance, so the axes are uncorrelated in the
    style), each axis's values are mapped onto the style's by rank, and the result is turned
    back to RGB and clamped. The photo's layout (which pixel is brighter along each axis) stays;
    its palette, brightness and contrast become the style's."""
    styles = [styles] if isinstance(styles, Tensor) else list(styles)
    if content.shape[-3] != 3 or any(style.shape[-3] != 3 for style in styles):
        raise ValueError("match_colors needs RGB images (3 channels)")
    reference = _pixels(styles)
    _, axes = torch.linalg.eigh(torch.cov(reference.T))
    source = _pixels([content]) @ axes
    target = reference @ axes
    matched = torch.stack([_match_quantiles(source[:, k], target[:, k]) for k in range(3)], dim=1)
    return (matched @ axes.T).T.reshape(content.shape).to(content.dtype).clamp(0, 1)
