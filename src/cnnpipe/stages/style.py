"""Style transfer, the stage: a chunk of content/style pairs per job, the networks loaded once.

For each pair: reads both images at the configured sizes, runs
:func:`cnnpipe.methods.style.optimize.transfer` (the algorithm: Gram matrices, losses, the
optimization) on the prepared backbone and writes the stylized PNG, a content | style | result
figure and a one-row CSV of the losses before and after. An independent ImageNet judge
(``style.judge``, a second network that is never optimized against) then measures the PNG as
written: how close its Gram matrices come to the style image's (``style_distance``: 1 = as far
as the content image, 0 = the style image's), how much of the photo's content it keeps
(``content_retention``: the cosine of the judge's pooled embeddings of result and photo, rescaled
so that the style image's is 0 and the photo's 1), and whether the judge's top-1 class for the
photo is among its top 5 for the result (``content_kept``). ``style.judge`` may list several
judges: the CSV's headline columns are then the mean over them, each judge's follow
(:func:`cnnpipe.judges.style_verdict.judges_result`)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from cnnpipe.io.files import atomic_write_text, save_figure, write_csv
from cnnpipe.io.images import load_image, pil_to_tensor, save_png
from cnnpipe.judges.imagenet import ImageNetJudge
from cnnpipe.judges.specs import check_judges
from cnnpipe.judges.style_verdict import each_judge, judges_result
from cnnpipe.methods.style.configured import scale_columns, transfer_configured_batch
from cnnpipe.methods.style.names import blend_label, blend_part, blend_weights
from cnnpipe.methods.style.optimize import StyleResult
from cnnpipe.methods.style.settings import check_style_batch
from cnnpipe.networks.build import load_backbone
from cnnpipe.networks.fold import inference_model
from cnnpipe.report.captions import style_key_numbers, write_caption
from cnnpipe.runtime.chunks import ERROR_SUFFIX, batches
from cnnpipe.runtime.device import seed_everything, select_device
from cnnpipe.runtime.logs import image_log

log = logging.getLogger(__name__)


def _resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


def load_pair(content_path, style_path, image_size: int, style_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Content resized so its longer side is ``image_size`` (aspect kept, up or down); style
    resized to the content's pixel area times ``style_scale``^2 (its own aspect kept), so both
    show features at a comparable scale. Tensors [3, H, W] in [0, 1]. ``style_path`` may be a
    list or tuple of files (a blend): then the style is a list of tensors, each sized so."""
    return _sized_pair(*_open_pair(content_path, style_path), image_size, style_scale)


def _open_pair(content_path, style_path) -> tuple[Image.Image, list[Image.Image] | Image.Image]:
    """The pair's images as read (a blend: a list of style images)."""
    content = load_image(content_path, "RGB")
    if isinstance(style_path, (list, tuple)):
        return content, [load_image(path, "RGB") for path in style_path]
    return content, load_image(style_path, "RGB")


def _sized_pair(content: Image.Image, style, image_size: int, style_scale: float) -> tuple[Tensor, Tensor]:
    if image_size < 8:
        raise ValueError(f"style.image_size must be at least 8 pixels, got {image_size}")
    several = isinstance(style, list)
    width, height = content.size
    factor = image_size / max(width, height)
    content = _resize(content, (max(1, round(width * factor)), max(1, round(height * factor))))
    area = content.size[0] * content.size[1] * style_scale**2
    resized = []
    for image in style if several else [style]:
        sw, sh = image.size
        factor = math.sqrt(area / (sw * sh))
        resized.append(pil_to_tensor(_resize(image, (max(8, round(sw * factor)), max(8, round(sh * factor))))))
    return pil_to_tensor(content), resized if several else resized[0]


def _display_layers(model: nn.Module, names: Sequence[str]) -> str:
    reverse = {}
    for alias, qualified in getattr(model, "layer_aliases", {}).items():
        reverse.setdefault(qualified, alias)
    return ", ".join(reverse.get(name, name) for name in names)


def style_strip(styles: Sequence[Tensor]) -> Tensor:
    """A blend's style images side by side at the first one's height (aspects kept), [3, H, W]."""
    height = styles[0].shape[-2]
    scaled = [F.interpolate(s[None], size=(height, max(1, round(s.shape[-1] * height / s.shape[-2]))),
                            mode="bilinear", antialias=True, align_corners=False)[0] for s in styles]
    return torch.cat(scaled, dim=-1).clamp(0, 1)


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


def _start(settings: Mapping) -> str:
    colors = settings.get("style_colors", "none")
    if colors == "none":
        return f"{settings['init']} image"
    return "content image in the style's colours" + (" (also the content target)" if colors == "content" else "")


def _footer(backbone: str, model: nn.Module, result: StyleResult, settings: Mapping, judged: Mapping | None) -> str:
    smoothed = f", {_smoothing(settings)}-smoothed features" if settings.get("smoothing", "none") != "none" else ""
    lines = [
        f"{backbone}; content layer(s) {_display_layers(model, result.content_layers)}; style (Gram) layers "
        f"{_display_layers(model, result.style_layers)}{smoothed}",
        f"relative errors (0 = identical): style {result.initial['style_loss']:.3g} -> "
        f"{result.final['style_loss']:.3g}, content {result.initial['content_loss']:.3g} -> "
        f"{result.final['content_loss']:.3g}; {len(result.history)} "
        f"{'L-BFGS evaluations' if settings['optimizer'] == 'lbfgs' else 'Adam steps'} from the "
        f"{_start(settings)}{', colours of the content kept' if settings.get('preserve_color') else ''}",
    ]
    several = each_judge(judged) if judged else []
    if several:
        lines.append(
            f"mean of {len(several)} judges (never optimized against): content retention "
            f"{judged['content_retention']:.2f} (1 = the photo's, 0 = the style image's); style distance "
            f"{judged['style_distance']:.2f} (1 = the content photo's, 0 = the style image's); content kept by "
            f"{judged['content_kept_judges']} of {len(several)}")
        lines.append("; ".join(f"{one['judge']}: retention {one['content_retention']:.2f}, distance "
                               f"{one['style_distance']:.2f}, {'kept' if one['content_kept'] else 'not kept'}"
                               for one in several))
    elif judged:
        lines += [
            f"judge {judged['judge']} (never optimized against): content retention {judged['content_retention']:.2f} "
            f"(1 = the photo's, 0 = the style image's); style distance {judged['style_distance']:.2f} (1 = the "
            f"content photo's, 0 = the style image's)",
            f"content kept: {'yes' if judged['content_kept'] else 'no'} (photo: {judged['content_class']!r} at "
            f"{judged['content_probability']:.0%}, rank {judged['content_rank'] + 1} for the result; result: "
            f"{judged['result_class']!r})",
        ]
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
    return {**row, "judge": None, "style_distance": None, "content_retention": None, "content_kept": None,
            "content_class": None, "content_probability": None, "content_rank": None, "result_class": None,
            **(judged or {})}


@dataclass
class StyleNetworks:
    """What every pair of a job shares: the backbone, prepared once (``inference_model``), its
    name, the judges (none: ``style.judge`` is null) and the device the backbone is on."""

    model: nn.Module
    name: str
    judges: list[ImageNetJudge]
    device: torch.device


def load_networks(settings: Mapping, *, device: str = "auto", cache_dir=None) -> StyleNetworks:
    """Load and prepare the backbone of ``settings["backbone"]`` and the judges of
    ``settings["judge"]`` on ``device``, once per job. Logs how long each took."""
    judge_specs = check_judges("style", settings.get("judge"), settings["backbone"])
    began = time.perf_counter()
    torch_device = select_device(device)
    model = load_backbone(settings["backbone"], cache_dir=cache_dir, key="style.backbone").to(torch_device)
    name = model.backbone_name
    model = inference_model(model, channels_last=torch_device.type != "mps")
    loaded = time.perf_counter()
    log.info("start-up: network %s loaded and prepared in %.2f s", name, loaded - began)
    judges = []
    for spec in judge_specs:
        judges.append(ImageNetJudge(spec, cache_dir=cache_dir))
        log.info("start-up: judge %s loaded in %.2f s", judges[-1].name, time.perf_counter() - loaded)
        loaded = time.perf_counter()
    return StyleNetworks(model, name, judges, torch_device)


@dataclass
class PairFiles:
    """One pair's files: what it reads (``style_path`` a list of files for a blend, with
    ``style_weights``) and what it writes."""

    content_path: str | os.PathLike
    style_path: str | os.PathLike | Sequence[str | os.PathLike]
    output_image: str | os.PathLike
    output_figure: str | os.PathLike
    output_csv: str | os.PathLike
    style_weights: Sequence[float] | None = None


@dataclass
class _ReadPair:
    """A pair's images at the final size, and the content as read (its size decides every
    scale's size, so pairs whose contents share it can share a batch)."""

    files: PairFiles
    content: Tensor
    style: Tensor | list[Tensor]
    weights: list[float]
    original_size: tuple[int, int]

    @property
    def styles(self) -> list[Tensor]:
        return self.style if isinstance(self.style, list) else [self.style]

    @property
    def style_files(self) -> list:
        path = self.files.style_path
        return list(path) if isinstance(path, (list, tuple)) else [path]

    @property
    def blend(self) -> list[float] | None:
        """The weights of a blend; None for one style image."""
        return self.weights if len(self.weights) > 1 else None

    @property
    def label(self) -> str:
        return Path(str(self.files.output_image)).stem


def _read_pair(files: PairFiles, settings: Mapping) -> _ReadPair:
    """Both images at ``style.image_size``: a bad file fails the pair at once, naming the file."""
    opened, style = _open_pair(files.content_path, files.style_path)
    content, style = _sized_pair(opened, style, int(settings["image_size"]), float(settings.get("style_scale", 1.0)))
    styles = style if isinstance(style, list) else [style]
    pair = _ReadPair(files, content, style, blend_weights(files.style_weights, len(styles)), opened.size)
    log.info("content %s -> %s, style %s", files.content_path, tuple(content.shape[1:]),
             ", ".join(f"{path} -> {tuple(s.shape[1:])} (weight {w:.3g})" for path, s, w in
                       zip(pair.style_files, styles, pair.weights)))
    return pair


def _style_read_pairs(pairs: Sequence[_ReadPair], settings: Mapping, networks: StyleNetworks, *, seed: int,
                      progress: bool) -> list[StyleResult]:
    """Transfer ``pairs`` (one, or several whose contents share their size) in one batch, then
    write each pair's PNG, let the judge measure it, and write its figure and losses CSV. Seeds
    first, so a pair's bytes do not depend on what ran before it in the process."""
    seed_everything(seed)
    model = networks.model
    image_size, style_scale = int(settings["image_size"]), float(settings.get("style_scale", 1.0))

    def reader(pair: _ReadPair):
        def images_at(size: int):
            # the final size's images are at hand; a smaller scale reads the files afresh
            if size == image_size:
                return pair.content, pair.style
            return load_pair(pair.files.content_path, pair.files.style_path, size, style_scale)
        return images_at

    if len(pairs) > 1:
        log.info("batch of %d pairs: %s", len(pairs), ", ".join(pair.label for pair in pairs))
    results = transfer_configured_batch(model, [reader(pair) for pair in pairs], settings,
                                        style_weights=[pair.blend for pair in pairs], seed=seed, progress=progress)
    for pair, result in zip(pairs, results):
        _write_pair(pair, result, settings, networks, prefix=f"{pair.label}: " if len(pairs) > 1 else "")
    return results


def _write_pair(pair: _ReadPair, result: StyleResult, settings: Mapping, networks: StyleNetworks, *,
                prefix: str = "") -> None:
    for when in ("initial", "final"):
        log.info("%s%s losses: %s", prefix, when, ", ".join(f"{k}={v:.4g}" for k, v in getattr(result, when).items()))
    files = pair.files
    save_png(result.image, files.output_image)
    judged = None
    if networks.judges:
        # the PNG as written (8 bits), as anyone who opens it sees it
        judged = judges_result(networks.judges, pair.content, pair.style,
                               pil_to_tensor(load_image(files.output_image)), pair.blend)
        _log_judged(judged, prefix)

    content_name, style_name = Path(str(files.content_path)).stem, blend_part(pair.style_files, pair.weights)
    title = (f"Style transfer (Gatys et al.): content of {content_name!r}, style of "
             f"{blend_label(pair.style_files, pair.weights)}")
    footer = _footer(networks.name, networks.model, result, settings, judged)
    several = len(pair.styles) > 1
    figure = side_by_side(pair.content, style_strip(pair.styles), result.image, title=title, footer=footer,
                          titles=("content", "styles (blended)" if several else "style", "result"))
    save_figure(figure, files.output_figure)
    row = _losses_row(content_name, style_name, networks.name, networks.model, result, settings, judged)
    write_csv(files.output_csv, pd.DataFrame([{**row, **scale_columns(result)}]))


def _log_judged(judged: Mapping, prefix: str) -> None:
    """Each judge's line and, for several, the mean's."""
    for one in each_judge(judged) or [judged]:
        log.info("%sjudge %s: style distance %.3f, content retention %.3f, content kept %s (%s at %.1f%%, rank %d "
                 "for the result; result: %s)", prefix, one["judge"], one["style_distance"], one["content_retention"],
                 one["content_kept"], one["content_class"], 100 * one["content_probability"],
                 one["content_rank"] + 1, one["result_class"])
    if each_judge(judged):
        log.info("%smean of the judges: style distance %.3f, content retention %.3f, content kept by %d",
                 prefix, judged["style_distance"], judged["content_retention"], judged["content_kept_judges"])


def style_pair(
    content_path,
    style_path,
    settings: Mapping,
    networks: StyleNetworks,
    *,
    output_image,
    output_figure,
    output_csv,
    style_weights: Sequence[float] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> StyleResult:
    """One pair with networks already loaded: read both images, transfer (at each of
    ``style.sizes`` in turn, if set), write the stylized PNG, let the judge measure it, write
    the side-by-side figure and the one-row losses CSV. ``style_path`` may be a list of files,
    a blend with ``style_weights``. Seeds first, so a pair's bytes do not depend on what ran
    before it in the process."""
    files = PairFiles(content_path, style_path, output_image, output_figure, output_csv, style_weights)
    pair = _read_pair(files, settings)
    return _style_read_pairs([pair], settings, networks, seed=seed, progress=progress)[0]


def batch_size(settings: Mapping, device: torch.device) -> int:
    """Pairs per batch for ``style.batch`` (checked by ``plan.check_style_batch``): a number, or
    "auto": 8 on CUDA with Adam (one 256 px pair leaves most of a GPU idle), else 1 (L-BFGS
    cannot batch; on a CPU one pair keeps the cores busy, and a batch changes the rounding)."""
    setting = check_style_batch(settings)
    if setting == "auto":
        return 8 if torch.device(device).type == "cuda" and settings["optimizer"] == "adam" else 1
    return setting


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
    """One pair on its own: load the networks (``load_networks``), then ``style_pair``.
    ``settings`` is the config's ``style`` section (pairs and folders are ignored)."""
    seed_everything(seed)
    networks = load_networks(settings, device=device, cache_dir=cache_dir)
    return style_pair(content_path, style_path, settings, networks, output_image=output_image,
                      output_figure=output_figure, output_csv=output_csv, seed=seed, progress=progress)


# The files of one pair in a chunk's folder, by the extension publish_item maps to an output.
CHUNK_FILES = {"png": "image", "figure.png": "figure", "csv": "losses", "rst": "caption"}


def run_style_chunk(
    pairs: Mapping[str, tuple[str | os.PathLike, str | os.PathLike | Sequence[str | os.PathLike]]],
    folder: str | os.PathLike,
    settings: Mapping,
    *,
    seed: int = 0,
    device: str = "auto",
    cache_dir=None,
) -> dict[str, StyleResult]:
    """Rule `style_chunk`: every pair of a chunk (name -> (content file, style file or files,
    as ``load_pair`` takes them)) in this one process, the backbone and the judge loaded
    once. Each pair gets ``folder/<pair>.png``, ``.figure.png``, ``.csv``, ``.rst`` (its
    caption's key numbers) and ``.log`` (its own log lines); a pair that fails gets
    ``<pair>.error`` instead, and the others go on. The seed is set again before each pair
    (each batch), so a pair's result does not depend on its chunk-mates or their order; with
    ``style.batch`` > 1 (Adam on a GPU, by default) pairs whose contents have one size are
    transferred together, and the batch's lines go to each of its pairs' logs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    networks = load_networks(settings, device=device, cache_dir=cache_dir)
    per_batch = batch_size(settings, networks.device)
    log.info("start-up: the networks are shared by the chunk's %d pair(s); %d pair(s) per batch", len(pairs),
             per_batch)
    chunk = _StyleChunk(pairs, folder, settings, networks, seed)
    if per_batch == 1:  # each pair read just before it runs
        plan = [[name] for name in pairs]
    else:  # all read first, to batch pairs whose contents have one size (hence one size at every scale)
        start = time.perf_counter()
        sizes = {name: chunk.loaded[name].original_size for name in pairs if chunk.read(name)}
        chunk.computing += time.perf_counter() - start
        plan = batches(sizes, per_batch)
    for names in plan:
        chunk.run(names, read=per_batch == 1)
    log.info("chunk: %d pair(s) in %.2f s of style transfer (reading and writing included), %.2f s per pair",
             len(pairs), chunk.computing, chunk.computing / max(1, len(pairs)))
    return chunk.results


class _StyleChunk:
    """A chunk job's pairs (name -> files) and what they share: the folder, the settings, the
    networks and the seed; the pairs read and not run yet, the results, and the seconds spent."""

    def __init__(self, pairs: Mapping, folder: Path, settings: Mapping, networks: StyleNetworks, seed: int):
        self.pairs, self.folder, self.settings, self.networks, self.seed = pairs, folder, settings, networks, seed
        self.loaded: dict[str, _ReadPair] = {}
        self.results: dict[str, StyleResult] = {}
        self.computing = 0.0

    def failed(self, names, error) -> None:
        """Log the failure and give each of ``names`` an error file: one bad pair must not cost
        its chunk-mates their results. Call it while handling ``error``."""
        log.exception("%s: failed; the other pairs of this chunk go on", ", ".join(names))
        for name in names:
            atomic_write_text(self.folder / f"{name}{ERROR_SUFFIX}", f"{error}\n")

    def read(self, name: str) -> bool:
        """Read pair ``name``'s images, logging to its own log; whether they could be read."""
        content_path, style_path, *weights = self.pairs[name]
        outputs = {key: self.folder / f"{name}.{ext}" for ext, key in CHUNK_FILES.items()}
        files = PairFiles(content_path, style_path, outputs["image"], outputs["figure"], outputs["losses"],
                          weights[0] if weights else None)
        try:
            with image_log(self.folder / f"{name}.log"):
                self.loaded[name] = _read_pair(files, self.settings)
        except Exception as error:
            self.failed([name], error)
        return name in self.loaded

    def run(self, names: list[str], *, read: bool) -> None:
        """Transfer ``names`` as one batch (``read``: read the one pair first) and write their
        files and captions, the batch's lines going to each of its pairs' logs; a failure fails
        this batch alone."""
        start = time.perf_counter()
        try:
            if read and not self.read(names[0]):
                return
            with ExitStack() as logs:
                for name in names:  # appended to: each log already holds its pair's line
                    logs.enter_context(image_log(self.folder / f"{name}.log", mode="a"))
                done = _style_read_pairs([self.loaded[name] for name in names], self.settings, self.networks,
                                         seed=self.seed, progress=True)
                for name, result in zip(names, done):
                    write_caption(self.folder / f"{name}.rst", style_key_numbers(self.loaded[name].files.output_csv))
                    self.results[name] = result
                    log.info("%s: done; it shared its job's start-up with %d other pair(s)", name,
                             len(self.pairs) - 1)
        except Exception as error:
            self.failed(names, error)
        finally:
            self.computing += time.perf_counter() - start
            for name in names:
                self.loaded.pop(name, None)
