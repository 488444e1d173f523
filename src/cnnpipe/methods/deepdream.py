"""DeepDream, the algorithm: the network exaggerates what it sees in a photo.

Gradient ascent on the photo itself to raise the activation energy ``||a||^2`` of one or more
layers, as in Google's DeepDream: the image is processed as a pyramid of *octaves*, smallest
first; each octave starts from that octave's photo plus the detail dreamed so far (scaled up),
so large patterns from the small octaves are refined at the larger ones. Every step rolls the
image by a random offset (wrap-around jitter) and takes the normalized step
``x += lr * g / mean|g|``.

The optimization is the engine's (:func:`cnnpipe.ascent.ascend` with ``optimizer="normalized"``,
a :class:`~cnnpipe.ascent.PixelImage` and a wrap-around :class:`~cnnpipe.ascent.Jitter`); this
module adds what the engine cannot know about:

* :class:`TiledEnergy` wraps the network so that one forward gives the mean ``a^2`` of each
  layer over the *whole* image while computing it window by window: each window holds a core
  tile plus a margin of context, and counts only the activations of its core, so windows do
  not double count and their sum is the whole image's energy (exactly, once the margin covers
  the layers' receptive field; near seams the missing context changes a few activations).
  Its backward recomputes each window with gradients, one at a time, so memory is bounded by
  one window however large the photo.
* The octave pyramid, the guard that drops octaves smaller than the layers can take, and the
  colour handling for a one-channel network.

Files are the stage's business (:mod:`cnnpipe.stages.dream`). On CPU the same seed gives the same
bytes: each octave's jitter comes from the engine's per-sample generator with the octave
number as the sample index."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnpipe import ascent
from cnnpipe.networks.aliases import default_layers as backbone_default_layers
from cnnpipe.networks.aliases import resolve_layer
from cnnpipe.runtime.device import model_device
from cnnpipe.runtime.logs import progress as progress_bar

log = logging.getLogger(__name__)

# ITU-R 601 luma, the weights PIL's convert("L") uses: the gray image a 1-channel CNN sees.
LUMA = (0.299, 0.587, 0.114)
# Probe size for layer strides: divisible by every stride up to 64.
_PROBE = 256


def default_layers(model: nn.Module) -> list[str]:
    """The backbone's DeepDream layers (``backbones.DEFAULT_LAYERS[arch]["dream"]``); for any
    other network (the trained lecture CNN included) the ReLU after its last convolution, or
    that convolution (the deepest spatial layer before pooling)."""
    defaults = backbone_default_layers(model)
    if defaults:
        return list(defaults["dream"])
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no convolution layer to dream with; name dream.layers")
    last = convs[-1]
    relu = last.replace("conv", "relu")
    names = dict(model.named_modules())
    return [relu if relu != last and isinstance(names.get(relu), nn.ReLU) else last]


def resolve_layers(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    """Qualified module names for ``layers`` (aliases allowed); empty or None: the default."""
    chosen = list(layers) if layers else default_layers(model)
    return list(dict.fromkeys(resolve_layer(model, name) for name in chosen))


def _input_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    return 3


def split_axis(length: int, tile: int, margin: int, align: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, length)`` into cores, each inside a window of at most ``tile`` pixels.

    Returns ``(core_start, core_end, window_start, window_end)``: cores tile the axis without
    overlap, windows add at least ``margin`` pixels of context on each side (clipped at the
    ends). ``align`` is the layers' stride: core bounds, margins and window starts are
    multiples of it, and every window's length equals ``length`` modulo ``align``, so each
    strided layer samples a window on the same grid as the whole image (TF "SAME" padding
    depends on the parity of the size). ``tile <= 0`` or ``length <= tile``: one window.
    """
    if tile <= 0 or length <= tile:
        return [(0, length, 0, length)]
    core = tile - 2 * margin - 2 * align
    if core < align:
        raise ValueError(
            f"dream.tile {tile} px is too small for a margin of {margin} px at a layer stride of {align} px; "
            f"use a tile of at least {2 * margin + 3 * align} px"
        )
    count = math.ceil(length / core)
    inner = sorted({(i * length // count) // align * align for i in range(1, count)} - {0})
    bounds = [0, *inner, length]
    out = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        stop = length if end + margin >= length else length - (length - end - margin) // align * align
        out.append((start, end, max(0, start - margin), stop))
    return out


class _TiledSums(torch.autograd.Function):
    """sum of a^2 over each layer's core activations, window by window; the backward
    recomputes one window at a time, so only one window's graph is ever alive."""

    @staticmethod
    def forward(ctx, x, owner):
        ctx.owner = owner
        ctx.save_for_backward(x)
        with torch.no_grad():
            sums, counts = owner._sums(x)
        ctx.mark_non_differentiable(counts)
        return sums, counts

    @staticmethod
    def backward(ctx, grad_sums, grad_counts):
        (x,) = ctx.saved_tensors
        owner = ctx.owner
        grad = torch.zeros_like(x)
        for rows, cols, cores in owner._windows(x.shape[-2], x.shape[-1]):
            piece = x[..., rows[2] : rows[3], cols[2] : cols[3]].detach().requires_grad_(True)
            with torch.enable_grad():
                sums, _ = owner._window_sums(piece, rows, cols, cores)
                (piece_grad,) = torch.autograd.grad(sums, piece, grad_sums)
            grad[..., rows[2] : rows[3], cols[2] : cols[3]] += piece_grad
        return grad, None


def tile_margin(tile: int, align: int, margin: int | None = None) -> int:
    """A window's context per side: ``margin`` (default ``tile // 16``) rounded up to a
    multiple of the layers' stride ``align``."""
    wanted = tile // 16 if margin is None else int(margin)
    return -(-max(0, wanted) // align) * align


class TiledEnergy(nn.Module):
    """``forward(x) -> [B, L]``: mean ``a^2`` of each of ``layers`` over the whole image x.

    Images larger than ``tile`` pixels are processed in windows of at most ``tile`` pixels
    (see the module docstring); ``tile <= 0`` never tiles. ``margin`` (pixels of context per
    side; default ``tile // 16``) is rounded up to a multiple of the layers' largest stride.
    The result passes through the child ``energy`` so the engine's ``capture`` can hook it.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str], tile: int = 512, margin: int | None = None):
        super().__init__()
        self.model = model
        self.layers = list(layers)
        self.energy = nn.Identity()
        self.tile = int(tile)
        self.strides = self._probe_strides()
        self.align = math.lcm(*self.strides.values())
        self.margin = tile_margin(self.tile, self.align, margin)
        self.min_side = self._probe_min_side()

    def _acts(self, x: Tensor) -> dict[str, Tensor]:
        with ascent.capture(self.model, self.layers) as acts:
            acts.run(x)
            out = dict(acts)
        for name, a in out.items():
            if not torch.is_tensor(a) or a.dim() != 4:
                shape = tuple(a.shape) if torch.is_tensor(a) else type(a).__name__
                raise ValueError(
                    f"layer {name!r} gives {shape}; DeepDream needs a spatial layer with output [B, C, H, W] "
                    "(a convolution, not a fully connected layer)"
                )
        return out

    @torch.no_grad()
    def _probe_strides(self) -> dict[str, int]:
        channels = _input_channels(self.model)
        probe = torch.zeros(1, channels, _PROBE, _PROBE, device=model_device(self.model))
        with ascent.frozen(self.model):
            try:
                acts = self._acts(probe)
            except RuntimeError as error:
                raise ValueError(
                    f"layers {self.layers} cannot be computed on a {_PROBE}x{_PROBE} image ({error}); "
                    "DeepDream needs convolutional layers, whose output is [B, C, H, W]"
                ) from error
        strides = {}
        for name, a in acts.items():
            height = a.shape[-2]
            if height < 2:
                raise ValueError(f"layer {name!r} is too deep for DeepDream: {height} px wide at {_PROBE} px")
            strides[name] = max(1, round(_PROBE / height))
        return strides

    @torch.no_grad()
    def _probe_min_side(self) -> int:
        """The smallest square side whose every layer map is at least 2x2 and that runs."""
        side = 2 * max(self.strides.values())
        channels = _input_channels(self.model)
        while side <= 4 * _PROBE:
            probe = torch.zeros(1, channels, side, side, device=model_device(self.model))
            try:
                with ascent.frozen(self.model):
                    acts = self._acts(probe)
                if all(min(a.shape[-2:]) >= 2 for a in acts.values()):
                    return side
            except RuntimeError:
                pass
            side *= 2
        raise ValueError(f"layers {self.layers} do not run on any image up to {4 * _PROBE} px")

    def _windows(self, height: int, width: int):
        rows = split_axis(height, self.tile, self.margin, self.align)
        cols = split_axis(width, self.tile, self.margin, self.align)
        for r in rows:
            for c in cols:
                yield r, c, (r[1] == height, c[1] == width)

    def _window_sums(self, piece: Tensor, rows, cols, last) -> tuple[Tensor, list[int]]:
        """[B, L] sum of a^2 over the activations of this window's core, and their counts."""
        acts = self._acts(piece)
        sums, counts = [], []
        for name in self.layers:
            a, s = acts[name], self.strides[name]
            top, left = (rows[0] - rows[2]) // s, (cols[0] - cols[2]) // s
            bottom = a.shape[-2] if last[0] else (rows[1] - rows[2]) // s
            right = a.shape[-1] if last[1] else (cols[1] - cols[2]) // s
            core = a[..., top:bottom, left:right]
            sums.append(core.pow(2).flatten(1).sum(1))
            counts.append(core[0].numel())
        return torch.stack(sums, 1), counts

    def _sums(self, x: Tensor) -> tuple[Tensor, Tensor]:
        total, counts = 0, torch.zeros(len(self.layers), device=x.device)
        for rows, cols, last in self._windows(x.shape[-2], x.shape[-1]):
            sums, numbers = self._window_sums(x[..., rows[2] : rows[3], cols[2] : cols[3]], rows, cols, last)
            total = total + sums
            counts += torch.tensor(numbers, dtype=counts.dtype, device=x.device)
        return total, counts

    def forward(self, x: Tensor) -> Tensor:
        windows = list(self._windows(x.shape[-2], x.shape[-1]))
        if len(windows) == 1:
            # One window: plain autograd, no recomputation.
            acts = self._acts(x)
            energy = torch.stack([acts[name].pow(2).flatten(1).mean(1) for name in self.layers], 1)
        else:
            sums, counts = _TiledSums.apply(x, self)
            energy = sums / counts
        return self.energy(energy)


def dream_objective() -> ascent.Objective:
    """Sum over layers of the mean ``a^2``, read from a :class:`TiledEnergy`'s output."""
    return ascent.Objective(lambda acts: acts["energy"].sum(1), {"energy"}, "deepdream energy")


def octave_sizes(height: int, width: int, octaves: int, scale: float, min_side: int) -> list[tuple[int, int]]:
    """Octave sizes, largest (``height`` x ``width``) first, each ``scale`` times smaller than
    the one before; octaves whose shorter side would fall below ``min_side`` are dropped."""
    if octaves < 1:
        raise ValueError(f"dream.octaves must be >= 1, got {octaves}")
    if octaves > 1 and scale <= 1:
        raise ValueError(f"dream.octave_scale must be > 1, got {scale}")
    sizes = []
    for k in range(octaves):
        size = (max(1, round(height / scale**k)), max(1, round(width / scale**k)))
        if min(size) < min_side:
            break
        sizes.append(size)
    return sizes


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear resize of [B, C, H, W] to ``size`` (H, W), antialiased when it shrinks."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _to_channels(x: Tensor, channels: int) -> Tensor:
    if channels == x.shape[1]:
        return x
    if channels == 1 and x.shape[1] == 3:
        weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * weights).sum(1, keepdim=True)
    raise ValueError(f"the network takes {channels}-channel images; got {x.shape[1]} channels")


@dataclass
class DreamResult:
    """The dreamed image [C, H, W] in [0, 1] (the input's size, 8-bit values), the layers,
    the octave sizes used, and the energy (sum over layers of mean a^2) before and after,
    both measured on the whole image at its own size."""

    image: Tensor
    layers: list[str]
    sizes: list[tuple[int, int]]
    energy_before: float
    energy_after: float
    layer_energy: dict[str, tuple[float, float]] = field(default_factory=dict)


def _photo_batch(images) -> Tensor:
    """[B, 3, H, W] from one image [3, H, W] or [1, 3, H, W], or from a sequence of [3, H, W]
    images of one size; anything else is an error."""
    if not torch.is_tensor(images):
        images = list(images)
        shapes = {tuple(image.shape) for image in images}
        if not images or len(shapes) != 1:
            raise ValueError(f"deep_dream_batch takes RGB images [3, H, W] of one size, got shapes {sorted(shapes)}")
        images = torch.stack(images)
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3 or len(images) < 1:
        raise ValueError(f"deep_dream takes RGB images [3, H, W], got {tuple(images.shape)}")
    return images


def _octave_plan(height: int, width: int, min_side: int, layers: Sequence[str], *, octaves: int,
                 octave_scale: float, max_side: int | None) -> list[tuple[int, int]]:
    """Octave sizes, largest first: the processing size is at most ``max_side`` (longer side)
    and at least ``min_side`` (shorter side), aspect kept; octaves below ``min_side`` are dropped."""
    factor = 1.0
    if max_side and max(height, width) > max_side:
        factor = max_side / max(height, width)
    if min(height, width) * factor < min_side:
        shrunk = factor < 1.0
        if shrunk:  # the setting's fault, not the photo's
            log.warning("dream.max_side %d would shrink %dx%d to %dx%d px, below the %d px the layers need on the "
                        "shorter side; dreaming at %d px on that side instead (raise dream.max_side)", max_side,
                        width, height, round(width * factor), round(height * factor), min_side, min_side)
        factor = min_side / min(height, width)
        if not shrunk:
            log.warning("%dx%d is smaller than the %d px the layers need; dreaming at %.0f%% size",
                        width, height, min_side, 100 * factor)
    top = (max(1, round(height * factor)), max(1, round(width * factor)))
    sizes = octave_sizes(*top, octaves, octave_scale, min_side)
    if len(sizes) < octaves:
        log.warning("octave %d would be smaller than %d px (the least the layers %s take); using %d octaves",
                    len(sizes) + 1, min_side, layers, len(sizes))
    return sizes


def _dream_octaves(energy: TiledEnergy, photo: Tensor, sizes: Sequence[tuple[int, int]], *, steps: int,
                   lr: float, jitter: int, seed: int, device: torch.device, progress: bool) -> Tensor:
    """Dream ``photo`` (already in the network's channels) through the octaves, smallest
    first; returns the dreamed detail (dream minus photo) at the largest octave's size."""
    objective = dream_objective()
    detail = None
    # The engine's per-step bar only on a terminal (it would flood a job's log file); the
    # octave bar is log-friendly.
    step_bars = progress and sys.stderr.isatty()
    octave_bar = progress_bar(total=len(sizes), desc="DeepDream octaves", unit="octave", disable=not progress)
    for octave, size in enumerate(reversed(sizes)):
        base = resize(photo, size).to(device)
        detail = torch.zeros_like(base) if detail is None else resize(detail, size)
        start = (base + detail).clamp(0, 1)
        param = ascent.PixelImage(start, mapping="clamp")
        transforms = (ascent.Jitter(0.0, min_px=int(jitter), padding="wrap"),) if jitter else ()
        began = time.perf_counter()
        result = ascent.ascend(
            energy, objective, param, steps=steps, lr=lr, optimizer="normalized", transforms=transforms,
            # every photo of a batch takes the octave's rolls, as it would alone
            seed=seed, indices=[octave] * len(photo), progress=step_bars, device=device,
            desc=f"octave {octave + 1}/{len(sizes)} {size[1]}x{size[0]}",
        )
        energies = ", ".join(f"{float(a):.4g} -> {float(b):.4g}" for a, b in zip(result.initial_objective,
                                                                               result.objective))
        log.info("octave %d/%d at %dx%d: energy %s (%d steps, %.1f s)", octave + 1, len(sizes),
                 size[1], size[0], energies, steps, time.perf_counter() - began)
        detail = result.images.to(device) - base
        octave_bar.update(1)
    octave_bar.close()
    return detail


def deep_dream(model: nn.Module, image: Tensor, **settings) -> DreamResult:
    """DeepDream one ``image`` ([3, H, W] or [1, 3, H, W], RGB in [0, 1]) with ``model``;
    ``settings`` as for :func:`deep_dream_batch`."""
    image = _photo_batch(image)
    if len(image) != 1:
        raise ValueError(f"deep_dream takes one image, got a batch of {len(image)}; use deep_dream_batch")
    return deep_dream_batch(model, image, **settings)[0]


def deep_dream_batch(
    model: nn.Module,
    images,
    *,
    layers: Sequence[str] | None = None,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    lr: float = 0.01,
    jitter: int = 32,
    tile: int = 512,
    max_side: int | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
    margin: int | None = None,
) -> list[DreamResult]:
    """DeepDream ``images`` (a list of [3, H, W] of one size, or [B, 3, H, W], RGB in [0, 1])
    with ``model``, all in one batch: one forward and backward per step for all of them.

    Each image is dreamed as it would be alone (its own energy, its own normalized step, the
    same random rolls): a batch changes only the floating-point rounding of the network's
    sums (none with one CPU thread), but the normalized steps can amplify that to visible
    differences, which is why the stage batches on a GPU only (``dream.batch``).
    ``layers``: names or aliases (empty: :func:`default_layers`). ``steps`` normalized steps
    of size ``lr`` per octave, a random roll of up to ``jitter`` px each step, gradients in
    windows of at most ``tile`` px. ``max_side``: dream at this longer side and add the
    upscaled detail to the full-size photo (None: dream at full size). A network with one
    input channel dreams on the luma and the change is added to every colour channel.
    """
    images = _photo_batch(images)
    device = model_device(model) if device is None else torch.device(device)
    model.to(device)
    names = resolve_layers(model, layers)
    channels = _input_channels(model)
    energy = TiledEnergy(model, names, tile=tile, margin=margin).to(device)
    original = images.float().clamp(0, 1)
    height, width = original.shape[-2:]
    sizes = _octave_plan(height, width, energy.min_side, names, octaves=octaves, octave_scale=octave_scale,
                         max_side=max_side)
    detail = _dream_octaves(energy, _to_channels(original, channels), sizes, steps=steps, lr=lr, jitter=jitter,
                            seed=seed, device=device, progress=progress)

    # The dreamed change, at the photo's size, on the photo (all colour channels for gray nets).
    dreamed = (original.to(device) + resize(detail, (height, width))).clamp(0, 1)
    dreamed = torch.round(dreamed * 255) / 255  # what the PNG will hold
    with ascent.frozen(energy), torch.no_grad():
        before = energy(_to_channels(original.to(device), channels)).cpu()
        after = energy(_to_channels(dreamed, channels)).cpu()
    return [
        DreamResult(
            image=dreamed[b].cpu(),
            layers=names,
            sizes=sizes,
            energy_before=float(before[b].sum()),
            energy_after=float(after[b].sum()),
            layer_energy={n: (float(x), float(y)) for n, x, y in zip(names, before[b], after[b])},
        )
        for b in range(len(images))
    ]
