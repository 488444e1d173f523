"""Style transfer, the stage: one content/style pair per job.

Reads both images at the configured sizes, loads and prepares the backbone, runs
:func:`cnnpipe.style_transfer.transfer` (the algorithm: Gram matrices, losses, the
optimization) and writes the stylized PNG, a content | style | result figure and a one-row
CSV of the losses before and after. An independent ImageNet judge (``style.judge``, a second
network that is never optimized against) then measures the PNG as written: how close its Gram
matrices come to the style image's (``style_distance``: 1 = as far as the content image, 0 =
the style image's), and whether it still shows what the content photo shows (``content_kept``:
the judge's top-1 class for the photo is among its top 5 for the result).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from torch import Tensor, nn

from cnnpipe.backbones import imagenet_class_names, load_backbone
from cnnpipe.device import seed_everything, select_device
from cnnpipe.fileio import save_figure, write_csv
from cnnpipe.images import load_image, pil_to_tensor, save_png
from cnnpipe.judge import ImageNetJudge, check_judge, content_kept, top_classes
from cnnpipe.style_transfer import StyleResult, prepare_model, transfer

__all__ = [
    "load_pair",
    "side_by_side",
    "judge_result",
    "run_pair",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- images


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


def load_pair(content_path, style_path, image_size: int, style_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Content resized so its longer side is ``image_size`` (aspect kept, up or down); style
    resized to the content's pixel area times ``style_scale``^2 (its own aspect kept), so both
    show features at a comparable scale. Tensors [3, H, W] in [0, 1]."""
    if image_size < 8:
        raise ValueError(f"style.image_size must be at least 8 pixels, got {image_size}")
    content = load_image(content_path, "RGB")
    style = load_image(style_path, "RGB")
    width, height = content.size
    factor = image_size / max(width, height)
    content = _resize(content, (max(1, round(width * factor)), max(1, round(height * factor))))
    area = content.size[0] * content.size[1] * style_scale**2
    sw, sh = style.size
    factor = math.sqrt(area / (sw * sh))
    style = _resize(style, (max(8, round(sw * factor)), max(8, round(sh * factor))))
    return pil_to_tensor(content), pil_to_tensor(style)


# --------------------------------------------------------------------------- the judge


def judge_result(judge: ImageNetJudge, content: Tensor, style: Tensor, result: Tensor) -> dict:
    """The judge's measures of one result [3, H, W] (best read back from its PNG): the mean
    ``style_distance`` over the judge's style layers and each layer's (``style_distance_<layer>``),
    ``content_kept``, and the judge's top-1 class for the content photo and for the result."""
    distances = judge.style_distance(result, style, content)
    proba = judge.predict_proba(torch.stack([content, result]))
    names = imagenet_class_names()
    row = {"judge": judge.kind, "style_distance": distances.pop("mean")}
    row.update({f"style_distance_{layer}": value for layer, value in distances.items()})
    first = top_classes(proba, 1)[:, 0]
    row.update(content_kept=bool(content_kept(proba[0], proba[1])), content_class=names[first[0]],
               result_class=names[first[1]])
    return row


# --------------------------------------------------------------------------- figure, table, job


def _display_layers(model: nn.Module, names: Sequence[str]) -> str:
    reverse = {}
    for alias, qualified in getattr(model, "layer_aliases", {}).items():
        reverse.setdefault(qualified, alias)
    return ", ".join(reverse.get(name, name) for name in names)


def side_by_side(content: Tensor, style: Tensor, result: Tensor, *, titles=("content", "style", "result"),
                 title: str | None = None, footer: str | None = None, height_in: float = 3.2):
    """content | style | result at a common height (each keeps its aspect ratio)."""
    from matplotlib.figure import Figure

    images = [t.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy() for t in (content, style, result)]
    widths = [height_in * im.shape[1] / im.shape[0] for im in images]
    gap = 0.15
    fig_w = sum(widths) + gap * (len(images) + 1)
    top = 0.35 + (0.3 * (title.count("\n") + 1) if title else 0.0)
    bottom = 0.25 * (footer.count("\n") + 1) + 0.1 if footer else 0.1
    fig_h = height_in + top + bottom
    fig = Figure(figsize=(fig_w, fig_h))
    x = gap
    for image, width, label in zip(images, widths, titles):
        ax = fig.add_axes((x / fig_w, bottom / fig_h, width / fig_w, height_in / fig_h))
        ax.imshow(image, interpolation="lanczos" if image.shape[0] < 400 else "antialiased")
        ax.set_axis_off()
        ax.set_title(label, fontsize=11)
        x += width + gap
    if title:
        fig.suptitle(title, fontsize=12, y=1 - 0.08 / fig_h, va="top")
    if footer:
        fig.text(0.5, 0.08 / fig_h, footer, ha="center", va="bottom", fontsize=8.5, color="0.25")
    return fig


def _smoothing(settings: Mapping) -> str:
    smoothing = settings.get("smoothing", "none")
    return f"softmax (T = {settings['smoothing_temperature']:g})" if smoothing == "softmax" else smoothing


def _footer(backbone: str, model: nn.Module, result: StyleResult, settings: Mapping, judged: Mapping | None) -> str:
    smoothed = f", {_smoothing(settings)}-smoothed features" if settings.get("smoothing", "none") != "none" else ""
    lines = [
        f"{backbone}; content layer(s) {_display_layers(model, result.content_layers)}; style (Gram) layers "
        f"{_display_layers(model, result.style_layers)}{smoothed}",
        f"relative errors (0 = identical): style {result.initial['style_loss']:.3g} -> "
        f"{result.final['style_loss']:.3g}, content {result.initial['content_loss']:.3g} -> "
        f"{result.final['content_loss']:.3g}; {len(result.history)} "
        f"{'L-BFGS evaluations' if settings['optimizer'] == 'lbfgs' else 'Adam steps'} from the "
        f"{settings['init']} image{', colours of the content kept' if settings.get('preserve_color') else ''}",
    ]
    if judged:
        lines.append(
            f"judge {judged['judge']} (never optimized against): style distance {judged['style_distance']:.2f} "
            f"(1 = the content photo's, 0 = the style image's); content kept: "
            f"{'yes' if judged['content_kept'] else 'no'} (photo: {judged['content_class']!r}, "
            f"result: {judged['result_class']!r})"
        )
    return "\n".join(lines)


def _losses_row(content_name: str, style_name: str, backbone: str, model: nn.Module, result: StyleResult,
                settings: Mapping, judged: Mapping | None) -> dict:
    row = {"content": content_name, "style": style_name, "backbone": backbone,
           "content_layers": " ".join(_display_layers(model, result.content_layers).split(", ")),
           "style_layers": " ".join(_display_layers(model, result.style_layers).split(", ")),
           "smoothing": _smoothing(settings), "optimizer": settings["optimizer"],
           "evaluations": len(result.history)}
    for key in ("content_loss", "style_loss", "tv_loss", "total_loss"):
        row[f"{key}_initial"] = result.initial[key]
        row[f"{key}_final"] = result.final[key]
    # the judge's columns, empty without a judge
    return {**row, "judge": None, "style_distance": None, "content_kept": None, "content_class": None,
            "result_class": None, **(judged or {})}


def run_pair(
    content_path,
    style_path,
    settings: Mapping,
    *,
    output_image,
    output_figure,
    output_csv,
    seed: int = 0,
    device: str = "auto",
    cache_dir=None,
    progress: bool = True,
) -> StyleResult:
    """One pipeline job: load the backbone and both images, transfer, write the stylized PNG,
    let the judge measure it, write the side-by-side figure and the one-row losses CSV.
    ``settings`` is the config's ``style`` section (pairs and folders are ignored)."""
    # Images first: a bad file fails the job at once, naming the file.
    content, style = load_pair(content_path, style_path, int(settings["image_size"]),
                               float(settings.get("style_scale", 1.0)))
    judge_spec = check_judge("style", settings.get("judge"), settings["backbone"])
    seed_everything(seed)
    device = select_device(device)
    model = load_backbone(settings["backbone"], cache_dir=cache_dir, key="style.backbone").to(device)
    name = model.backbone_name
    model = prepare_model(model, channels_last=device.type != "mps")
    log.info("content %s -> %s, style %s -> %s", content_path, tuple(content.shape[1:]), style_path,
             tuple(style.shape[1:]))
    result = transfer(
        model, content, style,
        content_layers=settings.get("content_layers") or (),
        style_layers=settings.get("style_layers") or (),
        content_weight=settings["content_weight"],
        style_weight=settings["style_weight"],
        tv_weight=settings.get("tv_weight", 0.0),
        steps=int(settings["steps"]),
        optimizer=settings["optimizer"],
        lr=settings.get("lr"),
        init=settings["init"],
        preserve_color=bool(settings.get("preserve_color", False)),
        smoothing=settings.get("smoothing", "none"),
        temperature=float(settings.get("smoothing_temperature", 1.0)),
        seed=seed,
        progress=progress,
    )
    for when in ("initial", "final"):
        log.info("%s losses: %s", when, ", ".join(f"{k}={v:.4g}" for k, v in getattr(result, when).items()))
    save_png(result.image, output_image)
    judged = None
    if judge_spec is not None:
        # the PNG as written (8 bits), as anyone who opens it sees it
        judged = judge_result(ImageNetJudge(judge_spec, cache_dir=cache_dir), content, style,
                              pil_to_tensor(load_image(output_image)))
        log.info("judge %s: style distance %.3f, content kept %s (%s -> %s)", judged["judge"],
                 judged["style_distance"], judged["content_kept"], judged["content_class"], judged["result_class"])

    content_name, style_name = Path(str(content_path)).stem, Path(str(style_path)).stem
    title = f"Style transfer (Gatys et al.): content of {content_name!r}, style of {style_name!r}"
    footer = _footer(name, model, result, settings, judged)
    save_figure(side_by_side(content, style, result.image, title=title, footer=footer), output_figure)
    row = _losses_row(content_name, style_name, name, model, result, settings, judged)
    write_csv(output_csv, pd.DataFrame([row]))
    return result
