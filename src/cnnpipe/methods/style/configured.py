"""The style stage's settings (``style`` in config.yaml) turned into a transfer call, and the per-scale columns of its table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from cnnpipe.methods.style.optimize import StyleResult, transfer_multiscale_batch


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
        style_colors=settings.get("style_colors", "none"),
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
