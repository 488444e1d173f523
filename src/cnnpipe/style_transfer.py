"""Neural style transfer, the algorithm (Gatys et al. 2015, "A Neural Algorithm of Artistic
Style"): losses, targets and the optimization.

The picture x* keeps the *content* of one image (its feature maps at a deep layer) and takes
the *style* of another (the Gram matrices of filter responses at several layers: which
features occur together, wherever they are). It is one more gradient ascent on the input, run
by :mod:`cnnpipe.ascent`: the objective is minus the weighted losses

    total = content_weight * content_loss + style_weight * style_loss + tv_weight * tv_loss

with per-layer terms

    content term  mean_ij (F_ij - P_ij)^2                 F, P: [C, H*W] features of x, content
    style term    mean_cd (G_cd - A_cd)^2,  G = F F^T / (C H W)   A: Gram matrix of the style

The Gram matrix, normalized by the number of feature values, does not depend on the image
size, so content and style images may differ in size and aspect ratio. With ``relative=True``
(the default) each layer's term is divided by the mean square of its target, so every layer
counts alike and the weights mean the same for every backbone; content_loss and style_loss
are then means over their layers of relative squared errors (0 = identical, 1 = as far as
from zero). ``relative=False`` gives the PyTorch tutorial's raw sums.

The pixels: the picture plus a mirrored border of ``pad`` pixels is optimized, the border's
features do not count in the losses and it is cropped at the end (the network's edge
effects fall on the border). L-BFGS moves free pixels kept near [0, 1] by a smooth penalty
(see ``FreePixels`` for why not clamped or sigmoid pixels); Adam moves clamped pixels,
projected after every step. The engine runs the loop; ``steps`` counts L-BFGS evaluations.

Smoothing (``smoothing="softmax"``; after Wang, Li and Vasconcelos, CVPR 2021, "Rethinking
and Improving the Robustness of Image Style Transfer"): networks other than VGG have peaky,
low-entropy activations, a few large values at a few positions that the raw Gram matrices
and the content term chase, which shows as blocky artifacts. Both losses can instead compare
``smooth_features``: at every position p of layer l the softmax over its C channels

    S(p) = C softmax_c(F(p) / (T s_l)),    mean_c S_c(p) = 1

with T the ``temperature`` and s_l the root mean square of layer l on its target image (the
content image for content layers, the style image for style layers), so T means the same in
every layer and network. Every position then weighs the same in the Gram matrix, whatever
the size of its activations; which channels win there is what counts. Large T flattens S
towards 1 (no signal left), small T towards a one-hot vote. (A softmax over each channel's
positions, the other reading, left the image almost unchanged on EfficientNet-Lite0: it
concentrates on the peaks it should spread.)

A content layer may also give a vector, such as the network's logits (alias ``logits``): its
term then asks the picture to keep the generator's own prediction for the content photo (the
photo's class, not its layout), compared as it is (no positions: no softmax, no border).

Blended styles: several style images with weights w_i (normalized to sum 1) give the layer's
Gram target sum_i w_i G_i, each image seen at its own size (with smoothing, s_l is the root of
the weighted mean square over the style images, so one scale serves the whole blend).

Multiscale (``transfer_multiscale``, after jcjohnson/neural-style's multiresolution recipe):
the picture is made at a few sizes in turn, smallest first; each size starts from the
previous result upscaled (bicubic, clamped to [0, 1]), with the content and style images
taken afresh at that size. The coarse scales settle the layout cheaply, the large one only
refines it. L-BFGS keeps ``lbfgs_history`` pairs of image-sized vectors: at 1024 px with the
default 20 that is 40 x 13 MB, a share of the peak memory worth a setting.

Batches (``transfer_batch``, for a GPU): pairs whose contents have one size are optimized
together, one forward and backward per step for all; each keeps its own targets, norms and
smoothing scales (``stack_targets``), so its loss is the one it has alone. Adam only: its
steps are element-wise, while L-BFGS's dot products and step sizes would mix the pairs.

Targets are computed once, each image at its own size. Speed: style terms use one custom
autograd function whose backward is a single matmul (Gram + MSE fused); the forward pass
stops at the deepest needed layer (``ascent.capture``); ``cnnpipe.backbones.inference_model`` runs the network
in channels_last memory format, with BatchNorm folded into the preceding convolutions (on a
copy, :func:`cnnpipe.backbones.fold_batchnorm`) where the network has them. Reading the
images and writing the stage's files is :mod:`cnnpipe.style`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnpipe import ascent
from cnnpipe.backbone_spec import layer_list
from cnnpipe.backbones import default_layers, resolve_layer
from cnnpipe.device import model_device

__all__ = [
    "OPTIMIZERS",
    "INITS",
    "SMOOTHINGS",
    "gram_matrix",
    "gram_loss",
    "smooth_features",
    "content_loss",
    "tv_loss",
    "resolve_layers",
    "reflect_pad",
    "crop",
    "FreePixels",
    "range_penalty",
    "StyleTargets",
    "compute_targets",
    "stack_targets",
    "style_objective",
    "evaluate_losses",
    "preserve_colors",
    "StyleResult",
    "transfer",
    "transfer_batch",
    "blend_weights",
    "upscale",
    "transfer_multiscale",
    "transfer_multiscale_batch",
    "scale_columns",
    "transfer_configured",
    "transfer_configured_batch",
]

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
SMOOTHINGS = ("none", "softmax")
# Pixel steps: L-BFGS scales its own steps, Adam moves each pixel by about lr per step.
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
# The optimized canvas has a border of this many pixels, cropped at the end: TF "SAME"
# padding (EfficientNet) treats the top and left edges differently from the rest, and there
# the edge rows turn into stripes of noise.
EDGE_PAD = 8
# L-BFGS pixels: see FreePixels and _range_weight (5: at most 0.1 outside [0, 1] at the
# start's strongest gradient; 25 and 100 gave higher final losses on both benchmarks' nets).
RANGE_STIFFNESS = 5.0
# Noise start: grey plus Gaussian noise of this std (clamped to [0, 1]).
NOISE_STD = 0.25
# ITU-R BT.601 RGB -> YIQ; Y is the luminance that colour preservation takes from the result.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


# --------------------------------------------------------------------------- losses


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


# --------------------------------------------------------------------------- the network


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


# --------------------------------------------------------------------------- targets, objective


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


def blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """A style blend's weights normalized to sum 1 (None: ``count`` equal weights). Each must be
    a positive finite number."""
    if weights is None:
        weights = [1.0] * count
    weights = list(weights)
    if len(weights) != count:
        raise ValueError(f"style blend: {len(weights)} weights for {count} style images")
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not (
                math.isfinite(weight) and weight > 0):
            raise ValueError(f"style blend: weights must be positive numbers, got {weight!r}")
    total = float(sum(weights))
    return [float(w) / total for w in weights]


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
            margins = {}
            for name in layers:
                if acts[name].dim() != 4:  # a vector (the logits): no positions, no border
                    margins[name] = (0, 0)
                    continue
                height, width = acts[name].shape[-2:]
                # border pixels per feature pixel, rounded down: edge features that mix picture
                # and border still count
                margins[name] = (pad * height // canvas.shape[-2], pad * width // canvas.shape[-1])
            targets = StyleTargets({}, {}, {}, {}, int(pad), margins)
            content_maps = {name: targets.features(acts, name).detach().clone() for name in content_layers}
        if smoothing == "softmax":
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
            targets.smooth_scale = {name: temperature * max(math.sqrt(value), 1e-12)
                                    for name, value in squares.items()}
        # Gram targets: the weighted sum over the style images, each seen as it is (no border);
        # one image's maps at a time, so a blend costs no more memory than one image
        grams = {}
        for image, weight in zip(styles, weights):
            with ascent.capture(model, style_layers) as acts:
                acts.run(image.to(device))
                for name in style_layers:
                    gram = weight * gram_matrix(targets.smooth(name, acts[name].detach()))[0]
                    grams[name] = gram if name not in grams else grams[name] + gram
    targets.content = {name: targets.smooth(name, maps) for name, maps in content_maps.items()}
    targets.style = grams

    def norms(maps: Mapping[str, Tensor]) -> dict[str, float]:
        if not relative:
            return {name: 1.0 for name in maps}
        return {name: 1.0 / (len(maps) * max(float(t.square().mean()), 1e-12)) for name, t in maps.items()}

    targets.content_norm, targets.style_norm = norms(targets.content), norms(targets.style)
    return targets


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


def _content_value(acts, targets: StyleTargets) -> Tensor:
    return sum(w * content_loss(targets.compared(acts, name), targets.content[name])
               for name, w in targets.content_norm.items())


def _style_value(acts, targets: StyleTargets) -> Tensor:
    return sum(w * gram_loss(targets.compared(acts, name), targets.style[name])
               for name, w in targets.style_norm.items())


def style_objective(targets: StyleTargets, content_weight: float, style_weight: float) -> ascent.Objective:
    """-(content_weight * content_loss + style_weight * style_loss), per sample, to maximize."""
    content = ascent.Objective(lambda acts: _content_value(acts, targets), targets.content, "content_loss")
    style = ascent.Objective(lambda acts: _style_value(acts, targets), targets.style, "style_loss")
    return -(float(content_weight) * content + float(style_weight) * style)


@torch.no_grad()
def evaluate_losses(model: nn.Module, image: Tensor, targets: StyleTargets, weights: Mapping[str, float]) -> dict:
    """content_loss, style_loss, tv_loss and their weighted total for one image (seen with a
    mirrored border of ``targets.pad`` pixels, whose features do not count)."""
    device = model_device(model)
    image = _as_batch(image, "result").to(device)
    with ascent.frozen(model), ascent.capture(model, targets.layers) as acts:
        acts.run(reflect_pad(image, targets.pad))
        values = {"content_loss": float(_content_value(acts, targets)[0]),
                  "style_loss": float(_style_value(acts, targets)[0]),
                  "tv_loss": float(tv_loss(image)[0])}
    values["total_loss"] = sum(weights[name.removesuffix("_loss") + "_weight"] * values[name]
                               for name in ("content_loss", "style_loss", "tv_loss"))
    return values


# --------------------------------------------------------------------------- transfer


def preserve_colors(result: Tensor, content: Tensor) -> Tensor:
    """The result's luminance with the content's chroma (YIQ), so only the style's patterns
    transfer, not its palette (Gatys et al. 2016, "Preserving color ...", the simple variant)."""
    matrix = torch.tensor(_RGB_TO_YIQ, dtype=result.dtype, device=result.device)
    if result.shape != content.shape:
        raise ValueError(f"result {tuple(result.shape)} and content {tuple(content.shape)} differ in shape")
    to_yiq = lambda x: torch.einsum("dc,...chw->...dhw", matrix, x)  # noqa: E731
    yiq = torch.cat([to_yiq(result)[..., :1, :, :], to_yiq(content.to(result))[..., 1:, :, :]], dim=-3)
    return torch.einsum("dc,...chw->...dhw", torch.linalg.inv(matrix), yiq).clamp(0, 1)


@dataclass
class StyleResult:
    """The stylized image [3, H, W] in [0, 1], losses of the start image and of the result,
    the per-evaluation history of the minimized loss, and the layers used (qualified names)."""

    image: Tensor
    initial: dict
    final: dict
    history: Tensor
    content_layers: list[str] = field(default_factory=list)
    style_layers: list[str] = field(default_factory=list)
    # multiscale: per size, {"size", "height", "width", "evaluations", "initial", "final"}
    scales: list[dict] = field(default_factory=list)


class FreePixels(ascent.ImageParam):
    """One unconstrained value per pixel, the image itself; ``range_penalty`` keeps it near
    [0, 1] and the engine clamps the returned image.

    For L-BFGS. The engine's clamped pixels pass a straight-through gradient at the bounds,
    which L-BFGS takes for curvature: the loss tripled after ~120 evaluations, with or
    without projecting every 20 (EfficientNet-Lite0, 256 px). Sigmoid pixels add sigma''
    curvature that swamps weak curvature: on VGG19 the loss fell 4% in 300 evaluations.
    A smooth penalty outside [0, 1] has neither problem (measured below, benchmarks/).
    """

    def __init__(self, images: Tensor):
        super().__init__()
        self.pixels = nn.Parameter(images.detach().float().clone())

    def forward(self) -> Tensor:
        return self.pixels

    @torch.no_grad()
    def blur_(self, sigma: float) -> None:
        self.pixels.copy_(ascent.gaussian_blur(self.pixels, sigma))


def range_penalty(x: Tensor) -> Tensor:
    """Per-sample sum of squared excursions below 0 and above 1, [B]."""
    return (F.relu(x - 1).square() + F.relu(-x).square()).flatten(1).sum(1)


def _range_weight(model: nn.Module, objective: ascent.Objective, param: ascent.ImageParam) -> float:
    """RANGE_STIFFNESS x the largest pixel gradient of the objective at the start: a pixel the
    loss pushes out of range with today's strongest force settles 1 / (2 RANGE_STIFFNESS)
    outside, whatever the scale of the loss."""
    with ascent.frozen(model), ascent.capture(model, sorted(objective.layers)) as acts, torch.enable_grad():
        score = objective(acts.run(param())).sum()
        (grad,) = torch.autograd.grad(score, [param.pixels])
    return RANGE_STIFFNESS * max(float(grad.abs().max()), 1e-12)


def _canvas(content: Tensor, *, init: str, pad: int, optimizer: str, seed: int, device) -> ascent.ImageParam:
    """The optimized pixels: the image plus a border of ``pad`` pixels (the content mirrored
    outwards), cropped at the end, so the network's edge effects fall on the border, not on
    the picture. Starts from the content (or ``init`` "start": the given image, e.g. a previous
    scale's result) or from the engine's seeded noise; free pixels for L-BFGS, clamped pixels for
    Adam."""
    canvas = reflect_pad(content, pad)
    if init in ("content", "start"):
        spec = ascent.pixel_image(images=canvas)
    else:
        spec = ascent.pixel_image(tuple(canvas.shape[1:]), noise_std=NOISE_STD)
    param = spec([0], seed, device)  # the engine's seeded start, clamped pixels
    if optimizer == "lbfgs":
        param = FreePixels(param())
    return param


def _regularizers(model: nn.Module, objective: ascent.Objective, param: ascent.ImageParam, *,
                  tv_weight: float, optimizer: str) -> list:
    """(weight, penalty) pairs: total variation if weighted, and for L-BFGS the range penalty,
    weighted from the objective's gradient at the start."""
    regularizers = [(tv_weight, tv_loss)] if tv_weight else []
    if optimizer == "lbfgs":
        regularizers.append((_range_weight(model, objective, param), range_penalty))
    return regularizers


def transfer(
    model: nn.Module,
    content: Tensor,
    style: Tensor | Sequence[Tensor],
    *,
    style_weights: Sequence[float] | None = None,
    start: Tensor | None = None,
    **options,
) -> StyleResult:
    """Gatys et al. style transfer of ``style`` onto ``content`` (tensors [3, H, W] in [0, 1],
    sizes may differ) through ``model`` (a backbone taking [0, 1] images; prepare it with
    ``backbones.inference_model`` for speed). ``style`` may be several images blended with
    ``style_weights`` (see ``compute_targets``). ``start``, an image of the content's size,
    overrides ``init`` (multiscale: the previous scale's result). ``options`` as for
    ``transfer_batch``, of which this is the one-pair case."""
    return transfer_batch(model, [content], [style], style_weights=[style_weights], starts=[start],
                          **options)[0]


def transfer_batch(
    model: nn.Module,
    contents: Sequence[Tensor],
    styles: Sequence[Tensor | Sequence[Tensor]],
    *,
    style_weights: Sequence[Sequence[float] | None] | None = None,
    starts: Sequence[Tensor | None] | None = None,
    content_layers=(),
    style_layers=(),
    content_weight: float = 1.0,
    style_weight: float = 1.0,
    tv_weight: float = 0.0,
    steps: int = 300,
    optimizer: str = "lbfgs",
    lr: float | None = None,
    init: str = "content",
    preserve_color: bool = False,
    relative: bool = True,
    smoothing: str = "none",
    temperature: float = 1.0,
    pad: int = EDGE_PAD,
    seed: int = 0,
    device=None,
    progress: bool = True,
    lbfgs_history: int | None = None,
) -> list[StyleResult]:
    """Style transfer of pair i, ``styles[i]`` (an image or a blend with ``style_weights[i]``)
    onto ``contents[i]``, for every pair in one batch: one forward and backward per step for
    all of them. Each pair has its own targets and loss and starts as it would alone; the
    contents (and ``starts``, images of their size overriding ``init``) must be of one size.
    More than one pair needs ``optimizer="adam"``: Adam is element-wise, so a batch changes only
    the floating-point rounding of the network's sums, while L-BFGS's dot products would couple
    the pairs.

    ``steps`` counts L-BFGS function evaluations or Adam steps. ``init``: start from the content
    image or from seeded noise. ``pad``: a border of that many pixels around the optimized
    image, cropped at the end. ``smoothing`` "softmax": both losses compare softmax-smoothed
    features (with ``temperature``). L-BFGS optimizes free pixels with ``range_penalty`` and
    keeps ``lbfgs_history`` curvature pairs (default ``ascent.LBFGS_HISTORY``); Adam clamped
    pixels, projected after every step. See the module docstring for the losses; the final
    losses are those of the returned image."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"style.optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    if init not in INITS:
        raise ValueError(f"style.init must be one of {list(INITS)}, got {init!r}")
    if lbfgs_history is not None and (isinstance(lbfgs_history, bool) or int(lbfgs_history) != lbfgs_history
                                      or lbfgs_history < 1):
        raise ValueError(f"style.lbfgs_history must be a positive integer, got {lbfgs_history!r}")
    count = len(contents)
    if count == 0 or len(styles) != count:
        raise ValueError(f"transfer_batch needs one style per content, got {count} contents and {len(styles)} styles")
    if count > 1 and optimizer != "adam":
        raise ValueError(f"style transfer batches pairs with optimizer adam only, got {optimizer!r} for {count} "
                         "pairs: L-BFGS shares its dot products across the batch, so the pairs would change "
                         "each other's results")
    style_weights = [None] * count if style_weights is None else list(style_weights)
    starts = [None] * count if starts is None else list(starts)
    if len(style_weights) != count or len(starts) != count:
        raise ValueError(f"transfer_batch: {count} pairs, {len(style_weights)} style weights, {len(starts)} starts")
    if device is not None:
        model.to(device)
    device = model_device(model)
    contents = [_as_batch(content, "content") for content in contents]
    if len({tuple(content.shape) for content in contents}) > 1:
        raise ValueError("a batch of style pairs needs content images of one size, got "
                         f"{sorted({tuple(c.shape[2:]) for c in contents})}")
    starts = [None if image is None else _as_batch(image, "start") for image in starts]
    for image in starts:
        if image is not None and image.shape != contents[0].shape:
            raise ValueError(f"start image {tuple(image.shape[2:])} and content {tuple(contents[0].shape[2:])} "
                             "differ in size")
    content_q, style_q = resolve_layers(model, content_layers, style_layers)
    targets = [compute_targets(model, content, _style_list(style), content_q, style_q, relative=relative,
                               pad=pad, smoothing=smoothing, temperature=temperature, style_weights=weights)
               for content, style, weights in zip(contents, styles, style_weights)]
    weights = {"content_weight": float(content_weight), "style_weight": float(style_weight),
               "tv_weight": float(tv_weight)}
    # each pair's start as it would be alone (seeded noise: the seed's sample 0)
    params = [_canvas(content if first is None else first, init=init if first is None else "start", pad=pad,
                      optimizer=optimizer, seed=seed, device=device)
              for content, first in zip(contents, starts)]
    started = [crop(param().detach().clamp(0, 1), pad) for param in params]
    if count == 1:
        batch_targets, param = targets[0], params[0]
    else:
        batch_targets = stack_targets(targets)
        param = ascent.pixel_image(images=torch.cat([p().detach() for p in params]))(list(range(count)), seed,
                                                                                     device)
    objective = style_objective(batch_targets, content_weight, style_weight)
    result = ascent.ascend(
        model,
        objective,
        param,
        steps=steps,
        lr=DEFAULT_LR[optimizer] if lr is None else lr,
        optimizer=optimizer,
        regularizers=_regularizers(model, objective, param, tv_weight=tv_weight, optimizer=optimizer),
        seed=seed,
        progress=progress,
        desc=f"style ({optimizer}{f', {count} pairs' if count > 1 else ''})",
        lbfgs_history=lbfgs_history,
    )
    images = crop(result.images, pad)
    histories = -(result.history["objective"] - result.history["penalty"])
    results = []
    for i, (content, pair_targets) in enumerate(zip(contents, targets)):
        image = images[i : i + 1]
        if preserve_color:
            image = preserve_colors(image, content.to(image.device))
        results.append(StyleResult(
            image=image[0],
            initial=evaluate_losses(model, started[i], pair_targets, weights),
            final=evaluate_losses(model, image, pair_targets, weights),
            history=histories[:, i],
            content_layers=content_q,
            style_layers=style_q,
        ))
    return results


# --------------------------------------------------------------------------- multiscale


def upscale(image: Tensor, size: tuple[int, int]) -> Tensor:
    """``image`` [3, H, W] resized to ``size`` (height, width): bicubic (smooth, sharper than
    bilinear), clamped back to [0, 1] (bicubic overshoots at edges)."""
    image = _as_batch(image, "previous scale's")
    if tuple(image.shape[-2:]) == tuple(size):
        return image[0]
    return F.interpolate(image, size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)[0]


def _check_sizes(sizes: Sequence[int], steps) -> tuple[list[int], list[int]]:
    """Sizes (strictly increasing positive integers) and the steps of each scale (one number
    for all, or one per size)."""
    sizes = list(sizes)
    if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 8 for s in sizes):
        raise ValueError(f"style.sizes must be a list of integers >= 8 (pixels), got {sizes!r}")
    if any(b <= a for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"style.sizes must grow from scale to scale (each starts from the previous, "
                         f"upscaled), got {sizes}")
    per_scale = [steps] * len(sizes) if isinstance(steps, int) else list(steps)
    if len(per_scale) != len(sizes) or any(isinstance(n, bool) or not isinstance(n, int) or n < 0
                                           for n in per_scale):
        raise ValueError(f"style.steps must be an integer >= 0 or one per size ({len(sizes)}), got {steps!r}")
    return sizes, per_scale


def transfer_multiscale(
    model: nn.Module,
    images_at: Callable[[int], tuple[Tensor, Tensor | Sequence[Tensor]]],
    sizes: Sequence[int],
    *,
    on_scale: Callable[[int, StyleResult], None] | None = None,
    style_weights: Sequence[float] | None = None,
    **options,
) -> StyleResult:
    """Style transfer at each of ``sizes`` in turn (the content's longer side, smallest first).
    ``images_at(size)`` gives the content and the style image(s) for that size (read afresh
    from their files, not resampled from the previous scale); scale 1 starts as ``init`` says,
    every later one from the previous result upscaled (``upscale``). ``steps``: one count for
    every scale or one per scale. Colours of the content are kept, if asked, only at the end
    (a kept-colour start would pull the next scale's style towards the content's palette).
    ``options`` go to ``transfer``. The result is the last scale's; its ``initial`` losses are
    the first scale's start, its ``history`` all scales' evaluations in order, and ``scales``
    each scale's size, evaluations and initial and final losses. ``on_scale(index, result)``
    sees each scale's own result (benchmarks, tests)."""
    each_scale = None if on_scale is None else (lambda index, results: on_scale(index, results[0]))
    return transfer_multiscale_batch(model, [images_at], sizes, on_scale=each_scale,
                                     style_weights=[style_weights], **options)[0]


def transfer_multiscale_batch(
    model: nn.Module,
    images_at: Sequence[Callable[[int], tuple[Tensor, Tensor | Sequence[Tensor]]]],
    sizes: Sequence[int],
    *,
    steps: int | Sequence[int] = 300,
    preserve_color: bool = False,
    on_scale: Callable[[int, list[StyleResult]], None] | None = None,
    style_weights: Sequence[Sequence[float] | None] | None = None,
    **options,
) -> list[StyleResult]:
    """``transfer_multiscale`` for several pairs at once, one ``images_at`` each (their contents
    of one size at every scale), in one batch per scale (``transfer_batch``)."""
    sizes, per_scale = _check_sizes(sizes, steps)
    if "start" in options or "starts" in options:
        raise ValueError("transfer_multiscale makes its own start images")
    previous: list[Tensor] | None = None
    scales: list[list[StyleResult]] = []
    for index, (size, count) in enumerate(zip(sizes, per_scale)):
        pairs = [read(size) for read in images_at]
        contents = [_as_batch(content, "content")[0] for content, _ in pairs]
        starts = None if previous is None else [upscale(image, tuple(content.shape[-2:]))
                                                for image, content in zip(previous, contents)]
        last = index == len(sizes) - 1
        results = transfer_batch(model, contents, [style for _, style in pairs], steps=count, starts=starts,
                                 style_weights=style_weights, preserve_color=preserve_color and last, **options)
        if on_scale is not None:
            on_scale(index, results)
        scales.append(results)
        previous = [result.image for result in results]
    finals = []
    for i, final in enumerate(scales[-1]):
        own = [results[i] for results in scales]
        finals.append(StyleResult(
            image=final.image,
            initial=own[0].initial,
            final=final.final,
            history=torch.cat([r.history for r in own]),
            content_layers=final.content_layers,
            style_layers=final.style_layers,
            scales=[{"size": size, "height": int(r.image.shape[-2]), "width": int(r.image.shape[-1]),
                     "evaluations": len(r.history), "initial": r.initial, "final": r.final}
                    for size, r in zip(sizes, own)],
        ))
    return finals


def scale_columns(result: StyleResult) -> dict:
    """The losses CSV's per-scale columns of a multiscale result (none for one scale):
    ``scale<k>_size`` (the longer side in pixels), ``scale<k>_evaluations`` and
    ``scale<k>_<loss>_initial`` / ``_final`` for content_loss, style_loss, tv_loss and total_loss,
    k = 1 for the smallest size. Each scale's losses are against that scale's targets."""
    if len(result.scales) < 2:
        return {}
    row = {}
    for k, scale in enumerate(result.scales, start=1):
        row[f"scale{k}_size"] = scale["size"]
        row[f"scale{k}_evaluations"] = scale["evaluations"]
        for key in ("content_loss", "style_loss", "tv_loss", "total_loss"):
            row[f"scale{k}_{key}_initial"] = scale["initial"][key]
            row[f"scale{k}_{key}_final"] = scale["final"][key]
    return row


def transfer_configured(model: nn.Module, images_at: Callable[[int], tuple[Tensor, Tensor | Sequence[Tensor]]],
                        settings: Mapping, *, style_weights: Sequence[float] | None = None, seed: int = 0,
                        progress: bool = True, on_scale=None) -> StyleResult:
    """``transfer_multiscale`` as the config's ``style`` section says (the stage's one call):
    ``sizes`` (null: one size, ``image_size``), ``steps`` (one count or one per size),
    ``lbfgs_history`` (null: ``ascent.LBFGS_HISTORY``), the layers, weights, optimizer, start
    and smoothing. ``images_at(size)`` reads the content and style image(s) at that size."""
    each_scale = None if on_scale is None else (lambda index, results: on_scale(index, results[0]))
    return transfer_configured_batch(model, [images_at], settings, style_weights=[style_weights], seed=seed,
                                     progress=progress, on_scale=each_scale)[0]


def transfer_configured_batch(model: nn.Module, images_at: Sequence[Callable], settings: Mapping, *,
                              style_weights: Sequence[Sequence[float] | None] | None = None, seed: int = 0,
                              progress: bool = True, on_scale=None) -> list[StyleResult]:
    """``transfer_configured`` for several pairs in one batch (``transfer_multiscale_batch``)."""
    steps = settings["steps"]
    return transfer_multiscale_batch(
        model, images_at, settings.get("sizes") or [int(settings["image_size"])],
        steps=list(steps) if isinstance(steps, (list, tuple)) else int(steps),
        preserve_color=bool(settings.get("preserve_color", False)),
        on_scale=on_scale,
        content_layers=settings.get("content_layers") or (),
        style_layers=settings.get("style_layers") or (),
        content_weight=settings["content_weight"],
        style_weight=settings["style_weight"],
        tv_weight=settings.get("tv_weight", 0.0),
        optimizer=settings["optimizer"],
        lr=settings.get("lr"),
        init=settings["init"],
        smoothing=settings.get("smoothing", "none"),
        temperature=float(settings.get("smoothing_temperature", 1.0)),
        lbfgs_history=settings.get("lbfgs_history"),
        style_weights=style_weights,
        seed=seed,
        progress=progress,
    )
