"""Random transforms applied to the image before the model at each step.

Jitter, zoom and rotation make the result robust against adversarial high-frequency
patterns. Each is drawn separately for each sample from that sample's own generator
(``sample_generator(seed, i, STREAM_TRANSFORMS)``) and sized relative to the image.

Deterministic on CUDA too, in forward and backward: ``RandomAffine`` resamples by matrix
products there (grid_sample's CUDA backward adds atomically); ``Jitter``'s backward is an
accumulating ``index_put_``, which PyTorch's CUDA kernel does by sorting the indices, and
each input pixel receives at most four terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = ["Transform", "Jitter", "RandomAffine", "AFFINE_METHODS", "RandomCrops", "Noise", "random_scale", "random_rotate",
           "standard_transforms"]


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


AFFINE_METHODS = ("auto", "grid_sample", "matmul")
# Intermediate floats per chunk of the matmul resampling (512 MB in float32).
_CHUNK_FLOATS = 1 << 27


def _linear_weights(coord: Tensor, size: int, padding: str) -> Tensor:
    """[..., size] weights of linear interpolation at pixel coordinates ``coord`` [...] over
    ``size`` samples, with ``grid_sample``'s padding (``align_corners=False``) folded in.

    grid_sample reflects a coordinate about the outer pixel edges and then clips it, which
    equals interpolating the image extended symmetrically (the edge pixel repeated: -1 -> 0,
    -2 -> 1, period 2 * size); ``border`` extends it by its edge pixels, ``zeros`` by zeros.
    The two taps' one-hot rows are built by comparison, not scattered, so that building them
    needs no atomic additions on a GPU either.
    """
    low = torch.floor(coord)
    frac = coord - low
    low = low.long()
    index = torch.arange(size, device=coord.device)
    weights = coord.new_zeros((*coord.shape, size))
    for tap, weight in ((low, 1 - frac), (low + 1, frac)):
        if padding == "reflection":
            tap = torch.remainder(tap, 2 * size)
            tap = torch.where(tap >= size, 2 * size - 1 - tap, tap)
        elif padding == "border":
            tap = tap.clamp(0, size - 1)
        else:  # zeros: a tap outside the image matches no index and adds nothing
            tap = torch.where((tap >= 0) & (tap < size), tap, -1)
        weights = weights + weight[..., None] * (tap[..., None] == index)
    return weights


class RandomAffine(Transform):
    """Per-sample zoom s ~ U(scale) (s > 1 enlarges) and rotation ~ U(-degrees, degrees)
    about the centre, one bilinear resampling with grid_sample's semantics
    (``align_corners=False``; padding ``reflection``, ``border`` or ``zeros``).

    ``method``: ``grid_sample`` (``F.affine_grid`` + ``F.grid_sample``), ``matmul`` (the same
    resampling as dense matrix products, deterministic on CUDA in forward and backward, where
    grid_sample's backward adds atomically), or ``auto``: matmul on CUDA, grid_sample
    elsewhere (deterministic on the CPU already, and several times faster there). The two
    agree to float rounding (about 1e-6).

    The matmul form: output pixel (r, c) reads the input at (y, x); its bilinear weights
    factor into a row vector a_y over the H input rows and a_x over the W columns, so
    out[r, c] = a_y^T X a_x: one batched matrix product over the columns, then one over the
    rows. It costs B * H * W * (C * H + H + W) floats (420 MB for 10 RGB images at 128 px) and
    2 * B * C * H^2 * W^2 flops: fine on a GPU, about 80x grid_sample's time on a CPU core.
    Above _CHUNK_FLOATS the output rows go in chunks, each recomputed in the backward pass, so
    memory stays bounded (224 px: five chunks of 512 MB instead of 2.3 GB). Zoom alone
    (``degrees=0``) is separable and cheap: K_y X K_x^T with one [H, H] and one [W, W] matrix
    per sample (1.1x grid_sample's time on a CPU core).
    """

    n_params = 2

    def __init__(self, scale: tuple[float, float] = (1.0, 1.0), degrees: float = 0.0, padding: str = "reflection",
                 method: str = "auto"):
        if padding not in ("reflection", "border", "zeros"):
            raise ValueError(f"padding must be 'reflection', 'border' or 'zeros', got {padding!r}")
        if min(scale) <= 0:
            raise ValueError(f"scale range must be positive, got {scale}")
        if method not in AFFINE_METHODS:
            raise ValueError(f"method must be one of {list(AFFINE_METHODS)}, got {method!r}")
        self.scale, self.degrees, self.padding = (float(scale[0]), float(scale[1])), float(degrees), padding
        self.method = method

    def draw(self, gen, height, width):
        u = torch.rand(2, generator=gen)
        low, high = self.scale
        return torch.stack([low + (high - low) * u[0], (2 * u[1] - 1) * self.degrees])

    def apply(self, x, params):
        method = self.method
        if method == "auto":
            method = "matmul" if x.device.type == "cuda" else "grid_sample"
        params = params.to(x.dtype)
        scale, angle = params[:, 0], torch.deg2rad(params[:, 1])
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        if method == "grid_sample":
            return self._grid_sample(x, cos, sin)
        if self.degrees == 0:  # sin is exactly 0 for every sample
            return self._separable(x, cos)
        return self._matmul(x, cos, sin)

    def _grid_sample(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        zero = torch.zeros_like(cos)
        # Pixel-space rotation expressed in normalized coordinates, so non-square images rotate rigidly.
        theta = torch.stack(
            [torch.stack([cos, -sin * height / width, zero], 1), torch.stack([sin * width / height, cos, zero], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding, align_corners=False)

    def _centred(self, size: int, like: Tensor) -> Tensor:
        # Pixel centres relative to the image centre: exact half-integers, so the identity is exact.
        return torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2

    def _separable(self, x: Tensor, inv_scale: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        rows = inv_scale[:, None] * self._centred(height, x) + (height - 1) / 2
        cols = inv_scale[:, None] * self._centred(width, x) + (width - 1) / 2
        k_rows = _linear_weights(rows, height, self.padding)  # [B, H, H]
        k_cols = _linear_weights(cols, width, self.padding)  # [B, W, W]
        return k_rows[:, None] @ x @ k_cols[:, None].transpose(-1, -2)

    def _matmul(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        x_cols = x.permute(0, 3, 1, 2).reshape(batch, width, channels * height)  # [B, j, (ch, i)]
        # Output rows in chunks of at most _CHUNK_FLOATS intermediate floats; when there is more
        # than one chunk, each is recomputed in the backward pass instead of kept (checkpointing).
        per_row = batch * width * (channels * height + height + width)
        step = max(1, _CHUNK_FLOATS // per_row)
        if step >= height:
            return self._rows(x_cols, cos, sin, 0, height, x.shape)
        parts = [checkpoint(self._rows, x_cols, cos, sin, start, min(start + step, height), x.shape,
                            use_reentrant=False) for start in range(0, height, step)]
        return torch.cat(parts, dim=2)

    def _rows(self, x_cols: Tensor, cos: Tensor, sin: Tensor, start: int, stop: int, shape) -> Tensor:
        """Output rows start:stop of the rotated and zoomed image."""
        batch, channels, height, width = shape
        rows_out = stop - start
        u = self._centred(width, x_cols)[None, None, :]  # column offsets, [1, 1, W]
        v = self._centred(height, x_cols)[None, start:stop, None]  # row offsets, [1, R, 1]
        cos, sin = cos[:, None, None], sin[:, None, None]
        # Where output pixel (r, c) reads the input: [B, R, W] each (see _grid_sample's theta).
        cols = cos * u - sin * v + (width - 1) / 2
        rows = sin * u + cos * v + (height - 1) / 2
        a_x = _linear_weights(cols, width, self.padding).reshape(batch, rows_out * width, width)
        a_y = _linear_weights(rows, height, self.padding).reshape(batch, rows_out * width, height, 1)
        # t[b, rc, (ch, i)] = sum_j a_x[b, rc, j] x[b, ch, i, j]; then the sum over the rows i.
        t = (a_x @ x_cols).reshape(batch, rows_out * width, channels, height)
        return (t @ a_y).reshape(batch, rows_out, width, channels).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return (f"RandomAffine(scale={self.scale}, degrees={self.degrees}, padding={self.padding!r}, "
                f"method={self.method!r})")


def random_scale(low: float = 0.9, high: float = 1.1, padding: str = "reflection") -> RandomAffine:
    """Per-sample zoom uniform in [low, high]."""
    return RandomAffine(scale=(low, high), padding=padding)


def random_rotate(degrees: float = 10.0, padding: str = "reflection") -> RandomAffine:
    """Per-sample rotation uniform in [-degrees, degrees]."""
    return RandomAffine(degrees=degrees, padding=padding)


def standard_transforms(jitter: float = 0.05, scale=(0.95, 1.05), degrees: float = 5.0) -> tuple[Transform, ...]:
    """Jitter, zoom + rotation, a smaller jitter: sizes relative to the image."""
    return (Jitter(jitter), RandomAffine(scale, degrees), Jitter(jitter / 2))


class RandomCrops(Transform):
    """A random square crop of each image, resized to ``size`` x ``size``: a canvas larger than
    the network's input is seen a part at a time, so every part must show the class.

    The crop's side is a fraction ~ U(side) of the image's shorter side; its centre is the
    image's centre plus a Gaussian offset of ``spread`` times the side, each coordinate,
    moved so the crop stays inside the image. Resampled bilinearly at ``supersample`` times
    the output size and then averaged down, so a crop larger than the output is not aliased.
    On CUDA grid_sample's backward adds atomically (not bit-reproducible there).
    """

    n_params = 3

    def __init__(self, size: int, side: tuple[float, float] = (0.5, 0.6), spread: float = 0.15, supersample: int = 2):
        low, high = (float(side[0]), float(side[1]))
        if not 0 < low <= high <= 1:
            raise ValueError(f"crop side must be fractions 0 < low <= high <= 1, got {side}")
        if int(size) < 1 or int(supersample) < 1 or spread < 0:
            raise ValueError(f"size and supersample must be >= 1 and spread >= 0, got {size}, {supersample}, {spread}")
        self.size, self.side, self.spread, self.supersample = int(size), (low, high), float(spread), int(supersample)

    def draw(self, gen, height, width):
        low, high = self.side
        side = low + (high - low) * torch.rand((), generator=gen)
        centre = 0.5 + self.spread * torch.randn(2, generator=gen)
        # In units of the shorter side; the crop stays inside the image.
        half = side * min(height, width) / 2
        limits = torch.tensor([height, width], dtype=centre.dtype)
        centre = torch.minimum(torch.maximum(centre * limits, half + 0 * limits), limits - half) / limits
        return torch.stack([side, centre[0], centre[1]])

    def apply(self, x, params):
        height, width = x.shape[-2:]
        params = params.to(x.dtype)
        side, cy, cx = params[:, 0] * min(height, width), params[:, 1], params[:, 2]
        zero = torch.zeros_like(side)
        # Normalized coordinates in [-1, 1]: the crop's half-extent is side / size of the image.
        theta = torch.stack([torch.stack([side / width, zero, 2 * cx - 1], 1),
                             torch.stack([zero, side / height, 2 * cy - 1], 1)], 1)
        fine = self.size * self.supersample
        grid = F.affine_grid(theta, [x.shape[0], x.shape[1], fine, fine], align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return F.avg_pool2d(out, self.supersample) if self.supersample > 1 else out

    def __repr__(self) -> str:
        return f"RandomCrops(size={self.size}, side={self.side}, spread={self.spread}, supersample={self.supersample})"


class Noise(Transform):
    """Adds per-pixel noise to each image: Gaussian of std ``std`` plus uniform of width
    ``std``, drawn from the sample's own generator, so the network cannot rely on exact pixel
    values (the step after cropping, before the model)."""

    def __init__(self, std: float = 0.05):
        if std < 0:
            raise ValueError(f"noise std must be >= 0, got {std}")
        self.std = float(std)

    def __call__(self, x: Tensor, gens: Sequence[torch.Generator]) -> Tensor:
        if len(gens) != x.shape[0]:
            raise ValueError(f"{len(gens)} generators for a batch of {x.shape[0]}")
        shape = tuple(x.shape[1:])
        noise = torch.stack([torch.randn(shape, generator=gen) + torch.rand(shape, generator=gen) - 0.5 for gen in gens])
        return x + self.std * noise.to(device=x.device, dtype=x.dtype)

    def __repr__(self) -> str:
        return f"Noise(std={self.std})"
