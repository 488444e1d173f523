"""Random transforms applied to the image before the model at each step.

Jitter, zoom and rotation make the result robust against adversarial high-frequency
patterns. Each is drawn separately for each sample from that sample's own generator
(``sample_generator(seed, i, STREAM_TRANSFORMS)``) and sized relative to the image.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Transform", "Jitter", "RandomAffine", "random_scale", "random_rotate", "standard_transforms"]


class Transform:
    """A random transform drawn separately for each sample from its own generator."""

    n_params = 0

    def draw(self, gen: torch.Generator, height: int, width: int) -> Tensor:
        """The random parameters of one sample, a 1-D tensor of ``n_params`` values."""
        raise NotImplementedError

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        """Transform x [B, C, H, W] with per-sample parameters [B, n_params]."""
        raise NotImplementedError

    def draw_batch(self, gens: Sequence[torch.Generator], height: int, width: int) -> Tensor:
        return torch.stack([self.draw(gen, height, width) for gen in gens])

    def __call__(self, x: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
        if len(gens) != x.shape[0]:
            raise ValueError(f"{len(gens)} generators for a batch of {x.shape[0]}")
        return self.apply(x, self.draw_batch(gens, x.shape[-2], x.shape[-1]).to(x.device))


def _fold(index: Tensor, size: int, padding: str) -> Tensor:
    if padding == "wrap":
        return index % size
    index = index.abs()  # reflect without repeating the edge, like F.pad(mode="reflect")
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


class Jitter(Transform):
    """Integer shift (dy, dx), each uniform on [-d, d] (symmetric around 0), where
    d = max(min_px, round(frac * side)), capped at side - 1. Edges reflect or wrap."""

    n_params = 2

    def __init__(self, frac: float = 0.05, min_px: int = 1, padding: str = "reflect"):
        if padding not in ("reflect", "wrap"):
            raise ValueError(f"padding must be 'reflect' or 'wrap', got {padding!r}")
        self.frac, self.min_px, self.padding = frac, min_px, padding

    def max_shift(self, height: int, width: int) -> tuple[int, int]:
        return tuple(min(max(self.min_px, round(self.frac * side)), side - 1) for side in (height, width))

    def draw(self, gen, height, width):
        dy, dx = self.max_shift(height, width)
        return torch.stack(
            [torch.randint(-dy, dy + 1, (), generator=gen), torch.randint(-dx, dx + 1, (), generator=gen)]
        )

    def apply(self, x, params):
        batch, channels, height, width = x.shape
        params = params.long()
        # Output pixel (r, c) reads input (r - dy, c - dx): content moves by +dy, +dx.
        rows = _fold(torch.arange(height, device=x.device)[None] - params[:, :1], height, self.padding)
        cols = _fold(torch.arange(width, device=x.device)[None] - params[:, 1:], width, self.padding)
        b = torch.arange(batch, device=x.device).view(-1, 1, 1, 1)
        c = torch.arange(channels, device=x.device).view(1, -1, 1, 1)
        return x[b, c, rows[:, None, :, None], cols[:, None, None, :]]

    def __repr__(self) -> str:
        return f"Jitter(frac={self.frac}, min_px={self.min_px}, padding={self.padding!r})"


class RandomAffine(Transform):
    """Per-sample zoom s ~ U(scale) (s > 1 enlarges) and rotation ~ U(-degrees, degrees)
    about the centre, one bilinear resampling (``F.affine_grid``/``grid_sample``)."""

    n_params = 2

    def __init__(self, scale: tuple[float, float] = (1.0, 1.0), degrees: float = 0.0, padding: str = "reflection"):
        if padding not in ("reflection", "border", "zeros"):
            raise ValueError(f"padding must be 'reflection', 'border' or 'zeros', got {padding!r}")
        if min(scale) <= 0:
            raise ValueError(f"scale range must be positive, got {scale}")
        self.scale, self.degrees, self.padding = (float(scale[0]), float(scale[1])), float(degrees), padding

    def draw(self, gen, height, width):
        u = torch.rand(2, generator=gen)
        low, high = self.scale
        return torch.stack([low + (high - low) * u[0], (2 * u[1] - 1) * self.degrees])

    def apply(self, x, params):
        height, width = x.shape[-2:]
        params = params.to(x.dtype)
        scale, angle = params[:, 0], torch.deg2rad(params[:, 1])
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        zero = torch.zeros_like(cos)
        # Pixel-space rotation expressed in normalized coordinates, so non-square images rotate rigidly.
        theta = torch.stack(
            [torch.stack([cos, -sin * height / width, zero], 1), torch.stack([sin * width / height, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)

    def __repr__(self) -> str:
        return f"RandomAffine(scale={self.scale}, degrees={self.degrees}, padding={self.padding!r})"


def random_scale(low: float = 0.9, high: float = 1.1, padding: str = "reflection") -> RandomAffine:
    """Per-sample zoom uniform in [low, high]."""
    return RandomAffine(scale=(low, high), padding=padding)


def random_rotate(degrees: float = 10.0, padding: str = "reflection") -> RandomAffine:
    """Per-sample rotation uniform in [-degrees, degrees]."""
    return RandomAffine(degrees=degrees, padding=padding)


def standard_transforms(jitter: float = 0.05, scale=(0.95, 1.05), degrees: float = 5.0) -> tuple[Transform, ...]:
    """Jitter, zoom + rotation, a smaller jitter: sizes relative to the image."""
    return (Jitter(jitter), RandomAffine(scale, degrees), Jitter(jitter / 2))
