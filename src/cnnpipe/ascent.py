"""The one engine behind every picture: gradient ascent on the input of a frozen network.

Every visualization solves ``x* = argmax_x objective(model(x)) - penalty(x)``. The parts:

* **Layers and hooks** - ``get_layer`` finds a module by qualified name (``conv2``,
  ``blocks.2.0``); ``capture`` hooks the layers an objective needs and stops the forward
  pass as soon as all of them have produced output, so deeper layers never run.
* **Objectives** - an ``Objective`` maps the captured activations (name -> tensor with batch
  dim B) to a score per sample, shape [B], to *maximize*. They add, subtract and scale
  (``channel("conv2", 3) - 0.1 * layer_energy("conv1")``) and know which layers they need.
  Sample b may have its own objective: ``per_sample([...])`` fuses a list of them into one
  batched objective (``channel`` with a list of indices is a single gather).
* **Parameterizations** - an ``ImageParam`` holds the trainable tensors (batch first) and
  produces images [B, C, H, W] in [0, 1]: ``pixel_image`` (clamped or sigmoid pixels, started
  from seeded noise or given photos) and ``fft_image`` (1/f-scaled Fourier coefficients,
  decorrelated colour, sigmoid). ``pixel_image(...)``/``fft_image(...)`` return *specs*,
  callables ``spec(indices, seed, device) -> ImageParam``, so a chunk of samples can be built
  with their global indices.
* **Transforms** - random jitter, scale and rotation applied to the image before the model
  each step (robustness against adversarial high-frequency patterns), drawn separately for
  each sample from that sample's generator and sized relative to the image.
* **Regularizers** - per-sample penalties on the untransformed image (``l1``, ``l2``, ``tv``),
  weighted and subtracted; ``blur_every`` blurs the image every N steps as an operation.
* **The loop** - ``ascend`` freezes the model, then repeats: image = param(); transformed =
  transforms(image); score = objective(capture(transformed)); maximize
  ``sum_b (score_b - penalty_b)`` with Adam, DeepDream's normalized step, or L-BFGS.
  ``render_batched`` splits many per-sample objectives into chunks and concatenates.

Reproducibility: sample with global index i draws its initial noise and its transforms from
its own generators seeded from ``(seed, i)``. The loss is a *sum* over samples and Adam and the
normalized step act element-wise / per sample, so a batch equals its samples run one at a time
and the chunk size does not change results - up to float rounding: a batch of 1 takes other
conv/matmul kernels (differences ~1e-7), and after many steps such a difference can flip a
max-pool or ReLU choice, after which a few pixels' trajectories part (measured on a 28 px CNN:
<= 1e-6 after 20 Adam steps, ~3% of pixels visibly different after 50). On CPU the same seed and
chunking give bit-identical images; CUDA's grid_sample/index backward are not deterministic.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnpipe.logs import progress as log_progress

__all__ = [
    "LayerNotFoundError",
    "layer_names",
    "get_layer",
    "Activations",
    "capture",
    "frozen",
    "Objective",
    "channel",
    "channels",
    "neuron",
    "class_logit",
    "class_log_softmax",
    "class_probability",
    "layer_energy",
    "per_sample",
    "ImageParam",
    "PixelImage",
    "FFTImage",
    "pixel_image",
    "fft_image",
    "sample_generator",
    "Transform",
    "Jitter",
    "RandomAffine",
    "random_scale",
    "random_rotate",
    "standard_transforms",
    "l1",
    "l2",
    "tv",
    "gaussian_blur",
    "AscentResult",
    "ascend",
    "estimate_max_batch",
    "render_batched",
]

# Separate streams per sample, so changing the start image does not change the transforms.
_STREAM_INIT = 0
_STREAM_TRANSFORMS = 1


# --------------------------------------------------------------------------- layers, hooks


class LayerNotFoundError(LookupError):
    """A layer name that the model does not have."""


def layer_names(model: nn.Module) -> list[str]:
    """All qualified module names of ``model`` (without the root's empty name)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (``"conv2"``, ``"blocks.2.0"``; ``""`` is the model)."""
    if not isinstance(name, str):
        raise TypeError(f"layer name must be a string, got {type(name).__name__}")
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = layer_names(model)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        message = f"layer {name!r} not found in {type(model).__name__}"
        if close:
            message += f"; did you mean {', '.join(map(repr, close))}?"
        shown = ", ".join(names[:40]) + (f", ... ({len(names) - 40} more)" if len(names) > 40 else "")
        raise LayerNotFoundError(f"{message} Available layers: {shown}") from None


class _StopForward(Exception):
    """Raised by a hook once every requested layer has produced output."""


class Activations(dict):
    """Captured outputs by layer name; ``run(x)`` fills it from one (early-stopped) forward pass."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)
        self._stopping = False

    def run(self, x: Tensor, stop_early: bool = True) -> Activations:
        """Forward ``x``; with ``stop_early`` the pass ends right after the last needed layer."""
        self.clear()
        if not self.names:
            return self
        self._stopping = stop_early
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            self._stopping = False
        missing = [name for name in self.names if name not in self]
        if missing:
            raise RuntimeError(f"layers {missing} produced no output in the forward pass")
        return self

    def _store(self, name: str, output) -> None:
        self[name] = output
        if self._stopping and len(self) == len(self.names):
            raise _StopForward


@contextmanager
def capture(model: nn.Module, layer_names: Sequence[str]) -> Iterator[Activations]:
    """Hook ``layer_names`` for the duration of the block; hooks are removed on any exit.

    A module called twice in one pass keeps its first output when stopping early.
    """
    names = list(dict.fromkeys(layer_names))
    modules = [get_layer(model, name) for name in names]
    acts = Activations(model, names)
    handles = []
    try:
        for name, module in zip(names, modules):
            handles.append(module.register_forward_hook(_make_hook(acts, name)))
        yield acts
    finally:
        for handle in handles:
            handle.remove()


def _make_hook(acts: Activations, name: str):
    def hook(module, inputs, output):
        acts._store(name, output)

    return hook


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter grads inside the block; each module's mode and each
    parameter's ``requires_grad`` are restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode


# --------------------------------------------------------------------------- objectives


class Objective:
    """Activations (name -> [B, ...]) -> score per sample [B] to maximize.

    ``fn`` computes the score, ``layers`` names what it reads, ``batch`` is the batch size it
    was built for (per-sample objectives) or None (any batch). Objectives support ``+``,
    ``-``, unary ``-``, and ``*``/``/`` by numbers; ``sum(list_of_objectives)`` works.
    """

    def __init__(
        self,
        fn: Callable[[Mapping[str, Tensor]], Tensor],
        layers=(),
        name: str = "objective",
        *,
        batch: int | None = None,
        _fuse=None,
    ):
        self.fn = fn
        self.layers = frozenset(layers)
        self.name = name
        self.batch = batch
        # (key, argument, builder): objectives with equal keys fuse into builder([arguments]).
        self._fuse = _fuse

    def __call__(self, acts: Mapping[str, Tensor]) -> Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}", batch=self.batch)
        if not isinstance(other, Objective):
            return NotImplemented
        name = f"{self.name} + {other.name}"
        return Objective(
            lambda a: self(a) + other(a), self.layers | other.layers, name, batch=_joint_batch(self, other)
        )

    def __radd__(self, other):
        return self.__add__(other)

    def __neg__(self):
        return Objective(lambda a: -self(a), self.layers, f"-({self.name})", batch=self.batch)

    def __sub__(self, other):
        if isinstance(other, (int, float)):
            return self + (-other)
        if not isinstance(other, Objective):
            return NotImplemented
        name = f"{self.name} - ({other.name})"
        return Objective(
            lambda a: self(a) - other(a), self.layers | other.layers, name, batch=_joint_batch(self, other)
        )

    def __rsub__(self, other):
        return (-self).__add__(other)

    def __mul__(self, factor):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            return NotImplemented
        return Objective(lambda a: factor * self(a), self.layers, f"{factor} * ({self.name})", batch=self.batch)

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
            return NotImplemented
        return self * (1.0 / divisor)


def _joint_batch(first: Objective, second: Objective) -> int | None:
    if first.batch is not None and second.batch is not None and first.batch != second.batch:
        raise ValueError(f"cannot combine objectives for batches of {first.batch} and {second.batch}")
    return first.batch if first.batch is not None else second.batch


def _act(acts: Mapping[str, Tensor], layer: str) -> Tensor:
    a = acts[layer]
    if not torch.is_tensor(a):
        raise TypeError(f"layer {layer!r} returned {type(a).__name__}, not a tensor")
    if a.dim() < 2:
        raise ValueError(f"layer {layer!r} output has shape {tuple(a.shape)}; expected [B, C, ...]")
    return a


class _Index:
    """One unit for every sample (int), or one unit per sample (LongTensor [B])."""

    def __init__(self, k):
        if torch.is_tensor(k) and k.dim() == 0:
            k = int(k)
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            self.single, self.values = int(k), None
        else:
            values = torch.as_tensor(k, dtype=torch.long).reshape(-1)
            self.single, self.values = None, values
            self.lo = int(values.min()) if len(values) else 0
            self.hi = int(values.max()) if len(values) else 0

    @property
    def batch(self) -> int | None:
        return None if self.values is None else len(self.values)

    def pick(self, a: Tensor, layer: str) -> Tensor:
        """a [B, C, ...] -> a[b, k_b, ...] of shape [B, ...]."""
        units = a.shape[1]
        if self.values is None:
            if not -units <= self.single < units:
                raise IndexError(f"unit {self.single} out of range for layer {layer!r} with {units} units")
            return a[:, self.single]
        batch = a.shape[0]
        if len(self.values) != batch:
            raise ValueError(f"{len(self.values)} per-sample units for layer {layer!r} but a batch of {batch}")
        if self.lo < -units or self.hi >= units:
            raise IndexError(f"units {self.lo}..{self.hi} out of range for layer {layer!r} with {units} units")
        # One advanced-indexing gather for the whole batch.
        return a[torch.arange(batch, device=a.device), self.values.to(a.device)]

    def __repr__(self) -> str:
        return str(self.single) if self.values is None else f"[{len(self.values)} units]"


def _sum_or_mean(x: Tensor, reduce: str) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    if reduce == "sum":
        return flat.sum(1)
    if reduce == "mean":
        return flat.mean(1)
    raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")


def channel(layer: str, k, *, reduce: str = "sum") -> Objective:
    """Degree of activation a^k = sum_ij a^k_ij of channel ``k`` (``reduce="mean"``: mean).

    On a 2-D [B, features] output it is unit ``k``. ``k`` may be a list, one unit per sample.
    """
    index = _Index(k)

    def fn(acts):
        return _sum_or_mean(index.pick(_act(acts, layer), layer), reduce)

    fuse = None
    if index.values is None:
        fuse = (("channel", layer, reduce), index.single, lambda ks: channel(layer, ks, reduce=reduce))
    return Objective(fn, {layer}, f"channel({layer!r}, {index!r})", batch=index.batch, _fuse=fuse)


def channels(layer: str, ks: Sequence[int], *, reduce: str = "sum") -> Objective:
    """Sample b maximizes channel ``ks[b]`` of ``layer``: one gather for the whole batch."""
    if isinstance(ks, (int, np.integer)):
        raise TypeError("channels() takes one unit per sample; use channel() for a single unit")
    return channel(layer, ks, reduce=reduce)


def neuron(layer: str, k, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel ``k`` at one position (default: the centre) of a [B, C, H, W] layer."""
    index = _Index(k)

    def fn(acts):
        a = index.pick(_act(acts, layer), layer)
        if a.dim() != 3:
            raise ValueError(f"neuron() needs a [B, C, H, W] layer; {layer!r} gives {a.dim() + 1} dims")
        row = a.shape[1] // 2 if y is None else y
        col = a.shape[2] // 2 if x is None else x
        return a[:, row, col]

    fuse = None
    if index.values is None:
        fuse = (("neuron", layer, y, x), index.single, lambda ks: neuron(layer, ks, y, x))
    return Objective(fn, {layer}, f"neuron({layer!r}, {index!r}, {y}, {x})", batch=index.batch, _fuse=fuse)


def class_logit(layer: str, i) -> Objective:
    """Logit y^i of the output unit ``i`` (the lecture's "can we see digits?")."""
    obj = channel(layer, i)
    obj.name = f"class_logit({layer!r}, {_Index(i)!r})"
    return obj


def _class_scores(layer: str, i, kind: str) -> Objective:
    index = _Index(i)

    def fn(acts):
        a = _act(acts, layer)
        if a[0].numel() != a.shape[1]:
            raise ValueError(f"{kind} needs a [B, classes] layer; {layer!r} gives {tuple(a.shape)}")
        a = a.reshape(a.shape[0], a.shape[1])
        scores = torch.log_softmax(a, dim=1) if kind == "log_softmax" else torch.softmax(a, dim=1)
        return index.pick(scores, layer)

    fuse = None
    if index.values is None:
        fuse = ((kind, layer), index.single, lambda ks: _class_scores(layer, ks, kind))
    return Objective(fn, {layer}, f"class_{kind}({layer!r}, {index!r})", batch=index.batch, _fuse=fuse)


def class_log_softmax(layer: str, i) -> Objective:
    """log p(i | x) from the logits at ``layer``: pushes class i up and the others down
    (the useful gradient for fooling images; the probability saturates near 1)."""
    return _class_scores(layer, i, "log_softmax")


def class_probability(layer: str, i) -> Objective:
    """Softmax probability of class ``i`` from the logits at ``layer``."""
    return _class_scores(layer, i, "probability")


def layer_energy(layer: str, *, reduce: str = "mean") -> Objective:
    """||a||^2 of the whole layer per sample, mean (default) or sum over its elements (DeepDream)."""

    def fn(acts):
        return _sum_or_mean(_act(acts, layer).pow(2), reduce)

    fuse = (("energy", layer, reduce), None, lambda _: layer_energy(layer, reduce=reduce))
    return Objective(fn, {layer}, f"layer_energy({layer!r}, {reduce})", _fuse=fuse)


def per_sample(objectives: Sequence[Objective]) -> Objective:
    """Sample b maximizes ``objectives[b]``.

    Objectives of one family (``channel`` of one layer, ``class_log_softmax`` of one layer, ...)
    are fused into one vectorized objective; others are evaluated on their own samples.
    """
    objs = list(objectives)
    if not objs:
        raise ValueError("per_sample() needs at least one objective")
    for obj in objs:
        if not isinstance(obj, Objective):
            raise TypeError(f"per_sample() takes Objectives, got {type(obj).__name__}")
        if obj.batch not in (None, 1):
            raise ValueError(f"per_sample() takes one objective per sample; {obj.name} is for {obj.batch} samples")
    batch = len(objs)
    groups: dict = {}
    for b, obj in enumerate(objs):
        key = obj._fuse[0] if obj._fuse is not None else ("object", id(obj))
        groups.setdefault(key, []).append(b)
    parts = []
    for members in groups.values():
        first = objs[members[0]]
        part = first._fuse[2]([objs[m]._fuse[1] for m in members]) if first._fuse is not None else first
        parts.append((torch.tensor(members, dtype=torch.long), part))
    layers = frozenset().union(*(obj.layers for obj in objs))
    name = f"per_sample({batch} objectives in {len(parts)} groups)"

    if len(parts) == 1:
        only = parts[0][1]

        def single(acts):
            score = only(acts)
            if score.shape != (batch,):
                raise ValueError(f"{name}: got a score of shape {tuple(score.shape)} for {batch} samples")
            return score

        return Objective(single, layers, name, batch=batch)

    def fn(acts):
        out = None
        for members, part in parts:
            sub = {}
            for layer in part.layers:
                a = acts[layer]
                if a.shape[0] != batch:
                    raise ValueError(f"{name}: layer {layer!r} has a batch of {a.shape[0]}")
                sub[layer] = a.index_select(0, members.to(a.device))
            value = part(sub)
            if out is None:
                out = value.new_zeros(batch)
            out = out.index_copy(0, members.to(value.device), value)
        return out

    return Objective(fn, layers, name, batch=batch)


def _as_objective(objective) -> tuple[Objective, int | None]:
    if isinstance(objective, Objective):
        return objective, objective.batch
    objs = list(objective)
    return per_sample(objs), len(objs)


# --------------------------------------------------------------------------- parameterizations


def sample_generator(seed: int, index: int, stream: int = _STREAM_INIT) -> torch.Generator:
    """A CPU generator for sample ``index`` of a run seeded with ``seed`` (``stream`` 0: start
    image, 1: transforms). Independent of which other samples share the batch."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and sample index must be >= 0 (got {seed}, {index})")
    state = np.random.SeedSequence([seed, index, stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of [B, C, H, W] with std ``sigma`` pixels, edges replicated."""
    if sigma <= 0:
        return x
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


class ImageParam(nn.Module):
    """Trainable tensors, each with the batch as first dim, giving images [B, C, H, W] in [0, 1]."""

    def forward(self) -> Tensor:
        raise NotImplementedError

    @property
    def batch(self) -> int:
        return next(self.parameters()).shape[0]

    @torch.no_grad()
    def project_(self) -> None:
        """Bring the parameters back into the valid set after an optimizer step."""

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        """Blur the images by ``sigma`` pixels in place."""
        raise NotImplementedError


_EPS = 1e-4


def _logit(x: Tensor) -> Tensor:
    x = x.clamp(_EPS, 1 - _EPS)
    return torch.log(x) - torch.log1p(-x)


class PixelImage(ImageParam):
    """One trainable value per pixel.

    ``mapping="clamp"``: the parameter is the image itself, projected to [0, 1] after each step
    (the forward clamps with a straight-through gradient, so pixels at 0 or 1 can move back).
    ``mapping="sigmoid"``: image = sigmoid(parameter).
    """

    def __init__(self, images: Tensor, mapping: str = "clamp"):
        super().__init__()
        if mapping not in ("clamp", "sigmoid"):
            raise ValueError(f"mapping must be 'clamp' or 'sigmoid', got {mapping!r}")
        self.mapping = mapping
        self.pixels = nn.Parameter(self._encode(images.detach().float()).clone())

    def _encode(self, images: Tensor) -> Tensor:
        return images.clamp(0, 1) if self.mapping == "clamp" else _logit(images)

    def forward(self) -> Tensor:
        if self.mapping == "sigmoid":
            return torch.sigmoid(self.pixels)
        return self.pixels + (self.pixels.clamp(0, 1) - self.pixels).detach()

    @torch.no_grad()
    def project_(self) -> None:
        if self.mapping == "clamp":
            self.pixels.clamp_(0, 1)

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        self.pixels.copy_(self._encode(gaussian_blur(self(), sigma)))


# ImageNet colour correlation, square root (Lucid's published numbers); columns scaled so the
# largest has unit norm.
_COLOR_CORRELATION_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
# Keeps the start image near grey and steps comparable to pixel steps.
_FFT_SHRINK = 4.0


def _color_matrix(channels: int, decorrelate: bool) -> Tensor:
    if channels == 3 and decorrelate:
        matrix = torch.tensor(_COLOR_CORRELATION_SQRT, dtype=torch.float32)
        return matrix / matrix.norm(dim=0).max()
    return torch.eye(channels)


def _rfft_freqs(height: int, width: int) -> Tensor:
    """|f| in cycles per pixel for each coefficient of ``rfft2`` of an H x W image."""
    fy = torch.fft.fftfreq(height).view(-1, 1)
    fx = torch.fft.rfftfreq(width).view(1, -1)
    return torch.sqrt(fy**2 + fx**2)


class FFTImage(ImageParam):
    """Fourier coefficients scaled by 1/|f|^decay_power, inverse FFT, colour mixing, sigmoid.

    The 1/f scaling gives low frequencies larger effective steps (natural-image statistics);
    the colour matrix (3 channels: ImageNet colour correlation; 1 channel: identity) lets each
    parameter channel move a decorrelated colour direction. Range: sigmoid -> (0, 1).
    """

    def __init__(self, spectrum: Tensor, size: tuple[int, int], decay_power: float = 1.0, decorrelate: bool = True):
        super().__init__()
        height, width = size
        channels = spectrum.shape[1]
        self.size = (height, width)
        freqs = _rfft_freqs(height, width)
        self.register_buffer("freqs", freqs)
        self.register_buffer("scale", 1.0 / freqs.clamp_min(1.0 / max(height, width)) ** decay_power)
        self.register_buffer("color", _color_matrix(channels, decorrelate))
        self.spectrum = nn.Parameter(spectrum.detach().float().clone())

    @classmethod
    def encode(cls, images: Tensor, decay_power: float = 1.0, decorrelate: bool = True) -> FFTImage:
        """The parameterization whose forward returns ``images`` (values clamped to (0, 1))."""
        height, width = images.shape[-2:]
        param = cls(
            torch.zeros(images.shape[0], images.shape[1], height, width // 2 + 1, 2),
            (height, width),
            decay_power,
            decorrelate,
        )
        linear = torch.einsum("cd,bdhw->bchw", torch.linalg.inv(param.color), _logit(images.float()))
        coefficients = torch.fft.rfft2(linear * _FFT_SHRINK, norm="ortho") / param.scale
        with torch.no_grad():
            param.spectrum.copy_(torch.view_as_real(coefficients))
        return param

    def forward(self) -> Tensor:
        coefficients = torch.view_as_complex(self.spectrum) * self.scale
        linear = torch.fft.irfft2(coefficients, s=self.size, norm="ortho") / _FFT_SHRINK
        return torch.sigmoid(torch.einsum("cd,bdhw->bchw", self.color, linear))

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        """Gaussian blur of the pre-sigmoid image, done exactly in Fourier space (circular)."""
        response = torch.exp(-2 * math.pi**2 * sigma**2 * self.freqs**2)
        self.spectrum.mul_(response[..., None])


def _shape_of(shape, images) -> tuple[int, int, int]:
    if shape is None:
        if images is None:
            raise ValueError("give the image shape (C, H, W) or start images")
        return tuple(int(s) for s in images.shape[-3:])
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise ValueError(f"image shape must be (C, H, W), got {shape}")
    if images is not None and tuple(images.shape[-3:]) != shape:
        raise ValueError(f"start images have shape {tuple(images.shape[-3:])}, expected {shape}")
    return shape


def _check_images(images) -> Tensor | None:
    if images is None:
        return None
    images = torch.as_tensor(images).detach().float().cpu()
    if images.dim() == 3:
        images = images[None]
    if images.dim() != 4:
        raise ValueError(f"start images must be [N, C, H, W], got {tuple(images.shape)}")
    return images


def _pick_images(images: Tensor, indices: Sequence[int]) -> Tensor:
    """Image ``indices[b]`` for sample b; a single image serves every sample."""
    if len(images) == 1:
        return images.expand(len(indices), -1, -1, -1).clone()
    bad = [i for i in indices if i >= len(images)]
    if bad:
        raise IndexError(f"sample indices {bad[:5]} but only {len(images)} start images")
    return images[torch.as_tensor(list(indices), dtype=torch.long)]


@dataclass(eq=False)
class PixelSpec:
    """Recipe for a ``PixelImage``: call with (indices, seed, device)."""

    shape: tuple[int, int, int]
    images: Tensor | None = None
    noise_std: float | None = None
    mapping: str = "clamp"

    @property
    def natural_batch(self) -> int | None:
        return len(self.images) if self.images is not None and len(self.images) > 1 else None

    def __call__(self, indices: Sequence[int], seed: int, device=None) -> PixelImage:
        std = self.noise_std if self.noise_std is not None else (0.0 if self.images is not None else 0.1)
        if self.images is None:
            base = torch.full((len(indices), *self.shape), 0.5)
        else:
            base = _pick_images(self.images, indices)
        if std > 0:
            noise = torch.stack([torch.randn(self.shape, generator=sample_generator(seed, i)) for i in indices])
            base = base + std * noise
        return PixelImage(base.clamp(0, 1), self.mapping).to(device)


@dataclass(eq=False)
class FFTSpec:
    """Recipe for an ``FFTImage``: call with (indices, seed, device)."""

    shape: tuple[int, int, int]
    images: Tensor | None = None
    sd: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True

    @property
    def natural_batch(self) -> int | None:
        return len(self.images) if self.images is not None and len(self.images) > 1 else None

    def __call__(self, indices: Sequence[int], seed: int, device=None) -> FFTImage:
        channels, height, width = self.shape
        if self.images is not None:
            return FFTImage.encode(_pick_images(self.images, indices), self.decay_power, self.decorrelate).to(device)
        size = (channels, height, width // 2 + 1, 2)
        spectrum = torch.stack([torch.randn(size, generator=sample_generator(seed, i)) for i in indices])
        return FFTImage(self.sd * spectrum, (height, width), self.decay_power, self.decorrelate).to(device)


def pixel_image(shape=None, *, images=None, noise_std: float | None = None, mapping: str = "clamp") -> PixelSpec:
    """Pixels started from grey + seeded Gaussian noise (std 0.1), or from ``images``
    ([N, C, H, W] in [0, 1]; sample index i starts from image i, or all from a single one;
    no noise unless ``noise_std`` is given). ``mapping``: ``"clamp"`` or ``"sigmoid"``."""
    if mapping not in ("clamp", "sigmoid"):
        raise ValueError(f"mapping must be 'clamp' or 'sigmoid', got {mapping!r}")
    images = _check_images(images)
    return PixelSpec(_shape_of(shape, images), images, noise_std, mapping)


def fft_image(
    shape=None, *, images=None, sd: float = 0.01, decay_power: float = 1.0, decorrelate: bool = True
) -> FFTSpec:
    """Decorrelated Fourier parameterization, started from seeded noise of std ``sd`` in
    coefficient space (a near-grey image) or encoded exactly from ``images``."""
    images = _check_images(images)
    return FFTSpec(_shape_of(shape, images), images, sd, decay_power, decorrelate)


# --------------------------------------------------------------------------- transforms


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


# --------------------------------------------------------------------------- regularizers


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


def _resolve_regularizers(regularizers) -> list[tuple[float, Callable[[Tensor], Tensor]]]:
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


# --------------------------------------------------------------------------- the loop


@dataclass
class AscentResult:
    """Final images [B, C, H, W] (CPU, [0, 1]) and per-sample values [B], all evaluated without
    transforms; ``history`` holds [steps, B] tensors of the objective and the weighted
    penalty seen at each step (with transforms), before that step's update."""

    images: Tensor
    objective: Tensor
    initial_objective: Tensor
    penalty: Tensor
    history: dict[str, Tensor] = field(default_factory=dict)
    indices: list[int] = field(default_factory=list)

    @staticmethod
    def concat(results: Sequence[AscentResult]) -> AscentResult:
        """Join results of consecutive chunks along the batch dimension."""
        keys = results[0].history.keys()
        return AscentResult(
            images=torch.cat([r.images for r in results]),
            objective=torch.cat([r.objective for r in results]),
            initial_objective=torch.cat([r.initial_objective for r in results]),
            penalty=torch.cat([r.penalty for r in results]),
            history={k: torch.cat([r.history[k] for r in results], dim=1) for k in keys},
            indices=[i for r in results for i in r.indices],
        )


_DEFAULT_LR = {"adam": 0.05, "normalized": 0.01, "lbfgs": 1.0}


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _resolve_batch(n_objectives, param, indices) -> list[int]:
    if indices is not None:
        indices = [int(i) for i in indices]
        if n_objectives is not None and len(indices) != n_objectives:
            raise ValueError(f"{len(indices)} indices for {n_objectives} objectives")
        return indices
    if n_objectives is not None:
        return list(range(n_objectives))
    if isinstance(param, ImageParam):
        return list(range(param.batch))
    return list(range(getattr(param, "natural_batch", None) or 1))


def ascend(
    model: nn.Module,
    objective,
    param,
    *,
    steps: int = 128,
    lr: float | None = None,
    optimizer: str = "adam",
    transforms: Sequence[Callable] = (),
    regularizers=None,
    blur_every: int | None = None,
    blur_sigma: float = 0.5,
    seed: int = 0,
    indices: Sequence[int] | None = None,
    progress: bool = True,
    device=None,
    desc: str = "ascent",
) -> AscentResult:
    """Maximize ``objective(model(transform(x))) - sum_w w * reg(x)`` over images x, per sample.

    ``objective``: an Objective (all samples) or a list, one per sample. ``param``: an
    ``ImageParam`` (used in place) or a spec ``(indices, seed, device) -> ImageParam``.
    The batch is ``len(indices)``, else the objective's batch (a list's length, or the number
    of units given to ``channels``), else the param's batch (a spec with N > 1 start images:
    N), else 1. ``indices`` are the samples' global indices (default 0..B-1),
    which seed their noise and transforms. ``regularizers``: ``{"l1": w, "tv": w}`` or pairs
    ``(w, fn)`` with ``fn(x) -> [B]``. ``optimizer``: ``"adam"`` (element-wise, so samples are
    independent), ``"normalized"`` (DeepDream: each sample's step is lr * g / mean|g| of that
    sample), or ``"lbfgs"`` (torch L-BFGS without line search; ``steps`` counts function
    evaluations; it couples the batch through shared dot products, so batched results differ
    from one-at-a-time; random transforms make its objective noisy, so usually pass none).
    ``blur_every``: Gaussian blur of ``blur_sigma`` px every N steps. ``lr`` defaults per
    optimizer: adam 0.05, normalized 0.01, lbfgs 1.0. The model is moved to ``device``
    (default: where it is), put in eval mode with frozen parameters, and restored afterwards.
    """
    if optimizer not in _DEFAULT_LR:
        raise ValueError(f"optimizer must be one of {sorted(_DEFAULT_LR)}, got {optimizer!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    lr = _DEFAULT_LR[optimizer] if lr is None else float(lr)
    objective, n_objectives = _as_objective(objective)
    indices = _resolve_batch(n_objectives, param, indices)
    if device is None:
        device = _model_device(model)
    else:
        device = torch.device(device)
        model.to(device)
    if isinstance(param, ImageParam):
        if param.batch != len(indices):
            raise ValueError(f"the image parameterization holds {param.batch} images for {len(indices)} samples")
        param = param.to(device)
    else:
        param = param(indices, seed, device)
    penalties = _resolve_regularizers(regularizers)
    gens = [sample_generator(seed, i, _STREAM_TRANSFORMS) for i in indices]
    batch = len(indices)
    params = list(param.parameters())

    def check(value: Tensor, what: str) -> Tensor:
        if value.shape != (batch,):
            raise ValueError(f"{what} must have shape [{batch}], got {tuple(value.shape)}")
        return value

    def penalty_of(x: Tensor) -> Tensor:
        total = x.new_zeros(batch)
        for weight, fn in penalties:
            total = total + weight * check(fn(x), f"regularizer {getattr(fn, '__name__', fn)}")
        return total

    scores: list[Tensor] = []
    pens: list[Tensor] = []

    with frozen(model), capture(model, sorted(objective.layers)) as acts:
        with torch.no_grad():
            initial = check(objective(acts.run(param())), "objective").detach()

        def evaluate() -> Tensor:
            x = param()
            seen = x
            for transform in transforms:
                seen = transform(seen, gens)
            score = check(objective(acts.run(seen)), "objective")
            pen = penalty_of(x)
            scores.append(score.detach())
            pens.append(pen.detach())
            # A sum, not a mean: each sample's gradient does not depend on the batch size.
            return -(score - pen).sum()

        bar = log_progress(total=steps, disable=not progress, desc=desc, leave=False)
        try:
            with torch.enable_grad():
                if optimizer == "lbfgs":
                    _run_lbfgs(param, params, evaluate, steps, lr, blur_every, blur_sigma, bar)
                else:
                    opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else None
                    for step in range(steps):
                        for p in params:
                            p.grad = None
                        evaluate().backward()
                        if opt is not None:
                            opt.step()
                        else:
                            _normalized_step(params, lr)
                        param.project_()
                        if blur_every and (step + 1) % blur_every == 0:
                            param.blur_(blur_sigma)
                        bar.update(1)
                        if progress and (step % 10 == 0 or step == steps - 1):
                            bar.set_postfix(objective=f"{scores[-1].mean().item():.4g}")
        finally:
            bar.close()

        with torch.no_grad():
            images = param().detach()
            final = check(objective(acts.run(images)), "objective").detach()
            final_penalty = penalty_of(images)

    history = {
        "objective": torch.stack(scores).cpu() if scores else torch.zeros(0, batch),
        "penalty": torch.stack(pens).cpu() if pens else torch.zeros(0, batch),
    }
    return AscentResult(
        images=images.clamp(0, 1).cpu(),
        objective=final.cpu(),
        initial_objective=initial.cpu(),
        penalty=final_penalty.cpu(),
        history=history,
        indices=list(indices),
    )


@torch.no_grad()
def _normalized_step(params: Sequence[Tensor], lr: float) -> None:
    # The loss is the negative objective, so descending it ascends the objective.
    for p in params:
        if p.grad is None:
            continue
        mean_abs = p.grad.abs().reshape(p.shape[0], -1).mean(1).clamp_min(1e-12)
        p.sub_(lr * p.grad / mean_abs.view(-1, *([1] * (p.dim() - 1))))


# Curvature pairs L-BFGS keeps (torch's default is 100, scipy's 10). Its two-loop recursion
# reads every pair twice per evaluation: with 100 pairs of a 192 px image that was a third of
# each evaluation, and 20 pairs reached the same loss in as many evaluations (style transfer on
# EfficientNet-Lite0: 322 vs 323 evaluations to the tutorial's final loss; 9.3 vs 14.4 ms each).
LBFGS_HISTORY = 20


def _run_lbfgs(param, params, evaluate, steps, lr, blur_every, blur_sigma, bar) -> None:
    """L-BFGS in rounds of at most ``blur_every`` evaluations; projection and blur between rounds."""
    opt = torch.optim.LBFGS(params, lr=lr, max_iter=1, line_search_fn=None, history_size=LBFGS_HISTORY)
    evals = 0

    def closure():
        nonlocal evals
        opt.zero_grad(set_to_none=True)
        loss = evaluate()
        loss.backward()
        evals += 1
        bar.update(1)
        return loss

    while evals < steps:
        budget = min(steps - evals, blur_every or steps)
        group = opt.param_groups[0]
        # Without line search an iteration costs one evaluation and the last iteration none,
        # so max_iter = budget spends exactly ``budget`` evaluations.
        group["max_iter"], group["max_eval"] = budget, budget + 1
        before = evals
        opt.step(closure)
        param.project_()
        if blur_every and evals % blur_every == 0:
            param.blur_(blur_sigma)
        if evals - before < budget and evals - before <= 1:
            break  # converged: the gradient is below tolerance


# --------------------------------------------------------------------------- batching


def estimate_max_batch(
    model: nn.Module, layers: Sequence[str], make_param, memory_mb: float, *, seed: int = 0, device=None
) -> int:
    """How many samples fit in ``memory_mb``, from one probe forward pass of a single sample.

    Counts the bytes of every leaf module's output up to the deepest needed layer, times 3
    (saved activations, their gradients, transform copies), plus 8 image-sized buffers
    (parameter, gradient, optimizer state, transformed copies). A rough, safe-side estimate.
    """
    device = _model_device(model) if device is None else torch.device(device)
    param = make_param([0], seed, device)
    total = [0]

    def count(module, inputs, output):
        if torch.is_tensor(output):
            total[0] += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with frozen(model), capture(model, layers) as acts, torch.no_grad():
            x = param()
            acts.run(x)
    finally:
        for handle in handles:
            handle.remove()
    per_sample = 3 * total[0] + 8 * x.numel() * x.element_size()
    return max(1, int(memory_mb * 2**20 // max(per_sample, 1)))


def render_batched(
    model: nn.Module,
    objectives: Sequence[Objective],
    make_param,
    *,
    max_batch: int | None = None,
    memory_mb: float | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
    **ascend_kwargs,
) -> AscentResult:
    """Optimize one image per objective, in chunks of ``max_batch`` (or as many as fit in
    ``memory_mb``, see ``estimate_max_batch``; neither: one batch). Sample i has global index
    i, so results do not depend on the chunking (except with ``optimizer="lbfgs"``)."""
    objs = list(objectives)
    if not objs:
        raise ValueError("render_batched() needs at least one objective")
    if max_batch is None and memory_mb is not None:
        layers = sorted(frozenset().union(*(obj.layers for obj in objs)))
        max_batch = estimate_max_batch(model, layers, make_param, memory_mb, seed=seed, device=device)
    size = len(objs) if max_batch is None else max(1, int(max_batch))
    starts = list(range(0, len(objs), size))
    results = []
    for n, start in enumerate(starts, start=1):
        chunk = list(range(start, min(start + size, len(objs))))
        results.append(
            ascend(
                model,
                objs[chunk[0] : chunk[-1] + 1],
                make_param,
                indices=chunk,
                seed=seed,
                device=device,
                progress=progress,
                desc=f"ascent {n}/{len(starts)}",
                **ascend_kwargs,
            )
        )
    return AscentResult.concat(results)
