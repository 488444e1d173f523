"""What a pair's result is compared with: the content and style images' features at the chosen layers, computed once, each image at its own size; stacked for a batch of pairs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnpipe import ascent
from cnnpipe.methods.style.losses import gram_matrix, smooth_features
from cnnpipe.methods.style.names import blend_weights
from cnnpipe.methods.style.settings import SMOOTHINGS
from cnnpipe.networks.aliases import default_layers, resolve_layer
from cnnpipe.networks.spec import layer_list
from cnnpipe.runtime.device import model_device

# The optimized canvas has a border of this many pixels, cropped at the end: TF "SAME"
# padding (EfficientNet) treats the top and left edges differently from the rest, and there
# the edge rows turn into stripes of noise.
EDGE_PAD = 8


def resolve_layers(model: nn.Module, content_layers=(), style_layers=()) -> tuple[list[str], list[str]]:
    """Qualified module names of the content and style layers. Names may be friendly aliases
    (``conv4_2``); an empty list means the backbone's default (``backbones.DEFAULT_LAYERS``)."""
    backbone = getattr(model, "backbone_name", None)
    defaults = default_layers(model) or {}
    chosen = []
    for kind, names in (("content", content_layers), ("style", style_layers)):
        names = layer_list(names)
        if not names:
            if kind not in defaults:
                raise ValueError(
                    f"style transfer: no {kind} layers given and {backbone or type(model).__name__!r} "
                    f"has no default {kind} layers; name them (style.{kind}_layers)"
                )
            default = defaults[kind]
            names = layer_list(default)
        try:
            qualified = [resolve_layer(model, name) for name in names]
        except ValueError as error:
            raise ValueError(f"style.{kind}_layers: {error}") from None
        chosen.append(list(dict.fromkeys(qualified)))
    return chosen[0], chosen[1]


@dataclass
class StyleTargets:
    """Feature maps of the content image and Gram matrices of the style image, by qualified
    layer name, each layer's weight inside content_loss / style_loss, and the border: the
    optimized image is seen with ``pad`` extra pixels on every side, and ``margins[layer]``
    (rows, columns) feature pixels on every side of a layer belong to that border."""

    content: dict[str, Tensor]
    style: dict[str, Tensor]
    # floats for one pair; [B] tensors for a batch of pairs (stack_targets)
    content_norm: dict[str, float | Tensor]
    style_norm: dict[str, float | Tensor]
    pad: int = 0
    margins: dict[str, tuple[int, int]] = field(default_factory=dict)
    # softmax smoothing: layer -> T s_l (see the module docstring); a layer not in it is used as
    # it is. For a batch, [B, 1, 1, 1] tensors.
    smooth_scale: dict[str, float | Tensor] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return sorted(set(self.content) | set(self.style))

    def features(self, acts: Mapping[str, Tensor], name: str) -> Tensor:
        """Layer ``name``'s output without its border part."""
        a = acts[name]
        rows, cols = self.margins.get(name, (0, 0))
        if rows == 0 and cols == 0:
            return a
        inner = a[..., rows : a.shape[-2] - rows, cols : a.shape[-1] - cols]
        # keep channels_last dense: the fused Gram backward then needs no layout change
        return inner.contiguous(memory_format=torch.channels_last) if a.is_contiguous(
            memory_format=torch.channels_last) else inner

    def smooth(self, name: str, features: Tensor) -> Tensor:
        """Layer ``name``'s features as the losses compare them: smoothed where smoothing is on."""
        scale = self.smooth_scale.get(name)
        return features if scale is None else smooth_features(features, scale)

    def compared(self, acts: Mapping[str, Tensor], name: str) -> Tensor:
        """Layer ``name``'s output without its border part, as the losses compare it."""
        return self.smooth(name, self.features(acts, name))


def _as_batch(image: Tensor, what: str) -> Tensor:
    image = torch.as_tensor(image).detach().float()
    if image.dim() == 3:
        image = image[None]
    if image.dim() != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"{what} image must be [3, H, W] or [1, 3, H, W] in [0, 1], got {tuple(image.shape)}")
    return image


def reflect_pad(x: Tensor, pad: int) -> Tensor:
    """``x`` [B, C, H, W] mirrored outwards by ``pad`` pixels on every side."""
    if pad <= 0:
        return x
    # reflect needs pad < side; replicate covers tiny images
    return F.pad(x, (pad,) * 4, mode="reflect" if pad < min(x.shape[-2:]) else "replicate")


def crop(x: Tensor, pad: int) -> Tensor:
    """Undo ``reflect_pad``: ``x`` without its outer ``pad`` pixels."""
    return x[..., pad : x.shape[-2] - pad, pad : x.shape[-1] - pad] if pad > 0 else x


def _style_list(style) -> list[Tensor]:
    """One style image ([3, H, W] or [1, 3, H, W]) or a sequence of them -> a list of batches."""
    images = [style] if torch.is_tensor(style) else list(style)
    if not images:
        raise ValueError("style transfer needs at least one style image")
    return [_as_batch(image, "style") for image in images]


@torch.no_grad()
def compute_targets(model: nn.Module, content: Tensor, style: Tensor | Sequence[Tensor],
                    content_layers: Sequence[str], style_layers: Sequence[str], *, relative: bool = True,
                    pad: int = 0, smoothing: str = "none", temperature: float = 1.0,
                    style_weights: Sequence[float] | None = None) -> StyleTargets:
    """One early-stopped forward pass per image, each at its own size. The content image is
    seen with a mirrored border of ``pad`` pixels, like the optimized canvas, and only the
    features inside the picture count; the style image is seen as it is. ``style`` may be
    several images, blended with ``style_weights`` (normalized to sum 1; default equal): each
    style layer's target is sum_i w_i G_i. ``relative``: layer l counts 1 / (L * mean(target_l^2))
    (relative squared errors averaged over L layers); otherwise 1 (the tutorial's sums).
    ``smoothing``: "none", or "softmax" (with ``temperature``; see the module docstring)."""
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"style.smoothing must be one of {list(SMOOTHINGS)}, got {smoothing!r}")
    if not temperature > 0:
        raise ValueError(f"style.smoothing_temperature must be positive, got {temperature!r}")
    device = model_device(model)
    content = _as_batch(content, "content").to(device)
    styles = _style_list(style)
    weights = blend_weights(style_weights, len(styles))
    canvas = reflect_pad(content, pad)
    layers = list(dict.fromkeys([*content_layers, *style_layers]))
    with ascent.frozen(model):
        with ascent.capture(model, layers) as acts:
            acts.run(canvas)
            targets = StyleTargets({}, {}, {}, {}, int(pad), _margins(acts, layers, pad, canvas))
            content_maps = {name: targets.features(acts, name).detach().clone() for name in content_layers}
        if smoothing == "softmax":
            targets.smooth_scale = _smooth_scales(model, content_maps, styles, weights, style_layers, temperature,
                                                  device)
        grams = _style_grams(model, targets, styles, weights, style_layers, device)
    targets.content = {name: targets.smooth(name, maps) for name, maps in content_maps.items()}
    targets.style = grams
    targets.content_norm, targets.style_norm = _norms(targets.content, relative), _norms(targets.style, relative)
    return targets


def _margins(acts: Mapping[str, Tensor], layers: Sequence[str], pad: int, canvas: Tensor) -> dict[str, tuple[int, int]]:
    """Per layer, the (rows, columns) of feature pixels on every side that belong to the
    canvas's border of ``pad`` pixels."""
    margins = {}
    for name in layers:
        if acts[name].dim() != 4:  # a vector (the logits): no positions, no border
            margins[name] = (0, 0)
            continue
        height, width = acts[name].shape[-2:]
        # border pixels per feature pixel, rounded down: edge features that mix picture
        # and border still count
        margins[name] = (pad * height // canvas.shape[-2], pad * width // canvas.shape[-1])
    return margins


def _smooth_scales(model: nn.Module, content_maps: Mapping[str, Tensor], styles: Sequence[Tensor],
                   weights: Sequence[float], style_layers: Sequence[str], temperature: float,
                   device) -> dict[str, float]:
    """Softmax smoothing's T s_l per layer (see the module docstring), for the frozen model."""
    # s_l from the layer's target image; a layer of both kinds takes the style images'
    # (the root of their weighted mean square: one scale for the whole blend)
    # a vector layer (the logits) is compared as it is: the softmax is over the channels
    # at each position of a feature map
    squares = {name: float(maps.square().mean()) for name, maps in content_maps.items() if maps.dim() == 4}
    style_squares = dict.fromkeys(style_layers, 0.0)
    for image, weight in zip(styles, weights):
        with ascent.capture(model, style_layers) as acts:
            acts.run(image.to(device))
            for name in style_layers:
                style_squares[name] += weight * float(acts[name].square().mean())
    squares.update(style_squares)
    return {name: temperature * max(math.sqrt(value), 1e-12) for name, value in squares.items()}


def _style_grams(model: nn.Module, targets: StyleTargets, styles: Sequence[Tensor], weights: Sequence[float],
                 style_layers: Sequence[str], device) -> dict[str, Tensor]:
    """Gram targets: the weighted sum over the style images, each seen as it is (no border),
    for the frozen model; one image's maps at a time, so a blend costs no more memory than one."""
    grams = {}
    for image, weight in zip(styles, weights):
        with ascent.capture(model, style_layers) as acts:
            acts.run(image.to(device))
            for name in style_layers:
                gram = weight * gram_matrix(targets.smooth(name, acts[name].detach()))[0]
                grams[name] = gram if name not in grams else grams[name] + gram
    return grams


def _norms(maps: Mapping[str, Tensor], relative: bool) -> dict[str, float]:
    """Each layer's weight inside its loss: 1 / (L * mean(target^2)) if ``relative``, else 1."""
    if not relative:
        return {name: 1.0 for name in maps}
    return {name: 1.0 / (len(maps) * max(float(t.square().mean()), 1e-12)) for name, t in maps.items()}


def stack_targets(targets: Sequence[StyleTargets]) -> StyleTargets:
    """Several pairs' targets as one batch: sample i is compared with pair i's content maps and
    Gram matrices, weighed by pair i's norms and smoothed with its scales (per-sample tensors),
    so each sample's loss is the one it would have alone. The pairs' canvases must be of one
    size (same layers, border and margins)."""
    first = targets[0]
    for other in targets[1:]:
        if (other.layers, other.pad, other.margins, sorted(other.smooth_scale)) != (
                first.layers, first.pad, first.margins, sorted(first.smooth_scale)):
            raise ValueError("stack_targets: the pairs differ in layers, border or size; only pairs whose "
                             "content images have one size share a batch")
    device = next(iter({**first.content, **first.style}.values())).device

    def per_sample(values: Sequence[float], *shape: int) -> Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device).view(-1, *shape)

    return StyleTargets(
        content={name: torch.cat([t.content[name] for t in targets]) for name in first.content},
        style={name: torch.stack([t.style[name] for t in targets]) for name in first.style},
        content_norm={name: per_sample([t.content_norm[name] for t in targets]) for name in first.content_norm},
        style_norm={name: per_sample([t.style_norm[name] for t in targets]) for name in first.style_norm},
        pad=first.pad,
        margins=dict(first.margins),
        smooth_scale={name: per_sample([t.smooth_scale[name] for t in targets], 1, 1, 1)
                      for name in first.smooth_scale},
    )
