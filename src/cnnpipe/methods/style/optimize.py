"""Style transfer's optimization: one pair or a batch of pairs, at one size or at several sizes in turn, run by the ascent engine."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnpipe import ascent
from cnnpipe.methods.style.colors import match_colors
from cnnpipe.methods.style.losses import (
    RANGE_STIFFNESS,
    content_loss,
    gram_loss,
    preserve_colors,
    range_penalty,
    tv_loss,
)
from cnnpipe.methods.style.settings import DEFAULT_LR, INITS, OPTIMIZERS, check_style_colors
from cnnpipe.methods.style.targets import (
    EDGE_PAD,
    StyleTargets,
    _as_batch,
    _style_list,
    compute_targets,
    crop,
    reflect_pad,
    resolve_layers,
    stack_targets,
)
from cnnpipe.runtime.device import model_device

# Noise start: grey plus Gaussian noise of this std (clamped to [0, 1]).
NOISE_STD = 0.25


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
    style_weights, starts = _check_pairs(contents, styles, style_weights, starts, optimizer=optimizer, init=init,
                                         lbfgs_history=lbfgs_history)
    device = _move_model(model, device)
    contents, starts = _pair_images(contents, starts)
    content_q, style_q = resolve_layers(model, content_layers, style_layers)
    targets = _pair_targets(model, contents, styles, style_weights, content_q, style_q, relative=relative, pad=pad,
                            smoothing=smoothing, temperature=temperature)
    weights = {"content_weight": float(content_weight), "style_weight": float(style_weight),
               "tv_weight": float(tv_weight)}
    params, started = _start_params(contents, starts, init=init, pad=pad, optimizer=optimizer, seed=seed,
                                    device=device)
    result = _ascend_pairs(model, targets, params, content_weight=content_weight, style_weight=style_weight,
                           tv_weight=tv_weight, steps=steps, optimizer=optimizer, lr=lr, seed=seed, device=device,
                           progress=progress, lbfgs_history=lbfgs_history)
    return _pair_results(model, result, contents, targets, started, weights, pad=pad, preserve_color=preserve_color,
                         layers=(content_q, style_q))


def _check_pairs(contents, styles, style_weights, starts, *, optimizer: str, init: str,
                 lbfgs_history) -> tuple[list, list]:
    """Check the options and that there is one style per content (more than one pair only with
    Adam); each pair's style weights and start (None: not given)."""
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
    return style_weights, starts


def _move_model(model: nn.Module, device) -> torch.device:
    """Move ``model`` to ``device`` if one is given; the device it is on."""
    if device is not None:
        model.to(device)
    return model_device(model)


def _pair_images(contents: Sequence[Tensor], starts: Sequence[Tensor | None]) -> tuple[list[Tensor], list]:
    """The contents and the given starts as [1, 3, H, W] batches, checked to be of one size."""
    contents = [_as_batch(content, "content") for content in contents]
    if len({tuple(content.shape) for content in contents}) > 1:
        raise ValueError("a batch of style pairs needs content images of one size, got "
                         f"{sorted({tuple(c.shape[2:]) for c in contents})}")
    starts = [None if image is None else _as_batch(image, "start") for image in starts]
    for image in starts:
        if image is not None and image.shape != contents[0].shape:
            raise ValueError(f"start image {tuple(image.shape[2:])} and content {tuple(contents[0].shape[2:])} "
                             "differ in size")
    return contents, starts


def _pair_targets(model: nn.Module, contents: Sequence[Tensor], styles, style_weights, content_q: list[str],
                  style_q: list[str], **options) -> list[StyleTargets]:
    """Each pair's own targets (``compute_targets``); its style one image or a blend."""
    return [compute_targets(model, content, _style_list(style), content_q, style_q, style_weights=weights, **options)
            for content, style, weights in zip(contents, styles, style_weights)]


def _start_params(contents: Sequence[Tensor], starts: Sequence[Tensor | None], *, init: str, pad: int,
                  optimizer: str, seed: int, device) -> tuple[list[ascent.ImageParam], list[Tensor]]:
    """Each pair's canvas as it would start alone (seeded noise: the seed's sample 0), and that
    start without its border, whose losses are the initial ones."""
    params = [_canvas(content if first is None else first, init=init if first is None else "start", pad=pad,
                      optimizer=optimizer, seed=seed, device=device)
              for content, first in zip(contents, starts)]
    started = [crop(param().detach().clamp(0, 1), pad) for param in params]
    return params, started


def _ascend_pairs(model: nn.Module, targets: Sequence[StyleTargets], params: Sequence[ascent.ImageParam], *,
                  content_weight: float, style_weight: float, tv_weight: float, steps: int, optimizer: str,
                  lr: float | None, seed: int, device, progress: bool,
                  lbfgs_history: int | None) -> ascent.AscentResult:
    """One ascent for all pairs: one pair optimizes its own canvas; several, one batch of their
    canvases, sample i compared with pair i's targets (``stack_targets``)."""
    count = len(params)
    if count == 1:
        batch_targets, param = targets[0], params[0]
    else:
        batch_targets = stack_targets(targets)
        param = ascent.pixel_image(images=torch.cat([p().detach() for p in params]))(list(range(count)), seed,
                                                                                     device)
    objective = style_objective(batch_targets, content_weight, style_weight)
    return ascent.ascend(
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


def _pair_results(model: nn.Module, result: ascent.AscentResult, contents: Sequence[Tensor],
                  targets: Sequence[StyleTargets], started: Sequence[Tensor], weights: Mapping[str, float], *,
                  pad: int, preserve_color: bool, layers: tuple[list[str], list[str]]) -> list[StyleResult]:
    """Each pair's result: its image without the border (the content's colours kept, if asked),
    the losses of its start and of that image, and its column of the minimized loss's history."""
    content_q, style_q = layers
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
    style_colors: str = "none",
    on_scale: Callable[[int, list[StyleResult]], None] | None = None,
    style_weights: Sequence[Sequence[float] | None] | None = None,
    **options,
) -> list[StyleResult]:
    """``transfer_multiscale`` for several pairs at once, one ``images_at`` each (their contents
    of one size at every scale), in one batch per scale (``transfer_batch``). ``style_colors``:
    the photo recoloured to the style's palette (``colors.match_colors``) is the first scale's
    start ("start") or, at every scale, both the start and the content target ("content")."""
    sizes, per_scale = _check_sizes(sizes, steps)
    check_style_colors({"style_colors": style_colors, "preserve_color": preserve_color,
                        "init": options.get("init", "content")})
    if "start" in options or "starts" in options:
        raise ValueError("transfer_multiscale makes its own start images")
    previous: list[Tensor] | None = None
    scales: list[list[StyleResult]] = []
    for index, (size, count) in enumerate(zip(sizes, per_scale)):
        pairs = [read(size) for read in images_at]
        contents = [_as_batch(content, "content")[0] for content, _ in pairs]
        recoloured = None
        if style_colors != "none":
            recoloured = [match_colors(content, style) for content, (_, style) in zip(contents, pairs)]
        if style_colors == "content":
            contents = recoloured
        # The first scale starts as init says, or from the recoloured photo; later ones upscale.
        starts = recoloured if previous is None else [upscale(image, tuple(content.shape[-2:]))
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
