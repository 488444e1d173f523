"""The lecture's convolution worked by hand, parameter counts, and first-layer filters.

The worked example: a 6x6 binary image and two 3x3 filters; convolution as in deep
learning (cross-correlation: no flipping; no padding, no bias) at stride 1 and 2, then
2x2 max pooling of the stride-1 maps. Everything is computed with the real torch ops."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import nn

from cnnpipe.io.files import save_figure, write_json
from cnnpipe.networks.lecture_cnn import build_model
from cnnpipe.report.plots import image_grid
from cnnpipe.runtime.device import model_device

# Immutable on purpose: module constants that are tensors could be changed in place.
LECTURE_IMAGE: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(ch) for ch in row) for row in "100001 010010 001100 100010 010010 001010".split()
)
LECTURE_FILTERS: tuple[tuple[tuple[int, ...], ...], ...] = (
    ((1, -1, -1), (-1, 1, -1), (-1, -1, 1)),
    ((-1, 1, -1), (-1, 1, -1), (-1, 1, -1)),
)
PIXEL_CMAP = "RdBu_r"
MAP_CMAP = "PuOr_r"


def _as_lists(values: torch.Tensor) -> list:
    """Nested lists with ints where a value is integral (JSON- and reader-friendly)."""
    if values.dim() == 0:
        number = float(values)
        return int(number) if number.is_integer() else number
    return [_as_lists(v) for v in values]


def conv_worked_example() -> dict:
    """Stride-1 and stride-2 feature maps and 2x2 max-pooled maps of the lecture's two filters.

    Keys ``stride1``, ``stride2``, ``maxpool`` (each a list over the filters of 2-D lists),
    plus ``image`` and ``filters`` so the result is self-contained.
    """
    image = torch.tensor(LECTURE_IMAGE, dtype=torch.float32)[None, None]  # [1, 1, 6, 6]
    filters = torch.tensor(LECTURE_FILTERS, dtype=torch.float32)[:, None]  # [2, 1, 3, 3]
    stride1 = F.conv2d(image, filters, stride=1)  # torch's conv2d is cross-correlation
    stride2 = F.conv2d(image, filters, stride=2)
    pooled = F.max_pool2d(stride1, kernel_size=2)
    return {
        "image": [list(row) for row in LECTURE_IMAGE],
        "filters": [[list(row) for row in f] for f in LECTURE_FILTERS],
        "stride1": _as_lists(stride1[0]),
        "stride2": _as_lists(stride2[0]),
        "maxpool": _as_lists(pooled[0]),
    }


def _number_grid(ax, values: np.ndarray, title: str, cmap: str, norm: Normalize, fontsize: float) -> None:
    """One annotated grid: a coloured cell and its number per entry, thin lines between cells."""
    rows, cols = values.shape
    ax.imshow(values, cmap=cmap, norm=norm, interpolation="nearest", aspect="equal")
    limit = max(abs(norm.vmin), abs(norm.vmax))
    for i in range(rows):
        for j in range(cols):
            value = values[i, j]
            text = f"{int(value)}" if float(value).is_integer() else f"{value:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, fontweight="bold",
                    color="white" if abs(value) > 0.6 * limit else "black")
    ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="0.35", linewidth=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10.5)


# The slide's geometry in inches: every cell has the same size, so numbers read alike.
_UNIT, _TITLE_H, _ROW_GAP, _TOP, _BOTTOM, _LEFT = 0.5, 0.62, 0.35, 0.8, 0.25, 0.3
_COLUMN_GAPS = (0.75, 0.8, 0.9, 1.0)  # input | filter | stride 1 | stride 2 | max pooling
_PATCH_STYLE = dict(fill=False, edgecolor="#1a9641", linewidth=3, linestyle="--")


@dataclass
class _Slide:
    """A figure laid out in inches: column lefts ``xs``, one row of panels per filter between
    ``band_top`` and ``band_bottom``, colour bars from ``bars_x``."""

    fig: Figure
    width: float
    height: float
    xs: list[float]
    row_h: float
    band_top: float
    band_bottom: float
    bars_x: float

    def place(self, x: float, y_top: float, rows: int, cols: int):
        """Axes for a rows x cols grid of cells whose top-left corner is (x, y_top) inches."""
        w, h = self.width, self.height
        return self.fig.add_axes((x / w, 1 - (y_top + rows * _UNIT) / h, cols * _UNIT / w, rows * _UNIT / h))

    def row_top(self, k: int) -> float:
        """Where the panels of filter k start, below their titles."""
        return _TOP + k * (self.row_h + _ROW_GAP) + _TITLE_H


def _slide(image: np.ndarray, filters: list[np.ndarray], maps: dict[str, list[np.ndarray]]) -> _Slide:
    map_rows = max(m.shape[0] for m in maps["stride1"])
    row_h = _TITLE_H + map_rows * _UNIT
    n_filters = len(filters)
    height = _TOP + n_filters * row_h + (n_filters - 1) * _ROW_GAP + _BOTTOM
    columns = [image.shape[1], filters[0].shape[1], maps["stride1"][0].shape[1], maps["stride2"][0].shape[1],
               maps["maxpool"][0].shape[1]]
    xs = [_LEFT]
    for width, gap in zip(columns[:-1], _COLUMN_GAPS):
        xs.append(xs[-1] + width * _UNIT + gap)
    bars_x = xs[-1] + columns[-1] * _UNIT + 0.55
    width = bars_x + 1.9
    return _Slide(Figure(figsize=(width, height)), width, height, xs, row_h, _TOP + _TITLE_H, height - _BOTTOM,
                  bars_x)


def _draw_input(slide: _Slide, image: np.ndarray, kernel_shape, norm: Normalize) -> None:
    """The input image, centred vertically, with the first patch a filter sees dashed."""
    y_image = (slide.band_top + slide.band_bottom) / 2 - image.shape[0] * _UNIT / 2
    ax = slide.place(slide.xs[0], y_image, *image.shape)
    _number_grid(ax, image, f"input image {image.shape[0]}x{image.shape[1]}", PIXEL_CMAP, norm, 12)
    # The first 3x3 patch, where filter 1 finds its diagonal (top-left output).
    kh, kw = kernel_shape
    ax.add_patch(Rectangle((-0.5, -0.5), kw, kh, **_PATCH_STYLE))
    ax.text(image.shape[1] / 2 - 0.5, image.shape[0] - 0.1, "dashed: first 3x3 patch\n(filter 1 gives 3 there)",
            ha="center", va="top", fontsize=9, color="#1a9641")


def _draw_filter_row(slide: _Slide, k: int, f: np.ndarray, maps: dict[str, list[np.ndarray]],
                     pixel_norm: Normalize, map_norm: Normalize) -> None:
    """Filter k, its stride-1 map (pooling windows marked), its stride-2 map and its pooled map."""
    y = slide.row_top(k)
    name = f"filter {k + 1}"
    _number_grid(slide.place(slide.xs[1], y, *f.shape), f, f"{name} ({f.shape[0]}x{f.shape[1]})", PIXEL_CMAP,
                 pixel_norm, 12)
    s1 = maps["stride1"][k]
    ax = slide.place(slide.xs[2], y, *s1.shape)
    _number_grid(ax, s1, f"{name}, stride 1\n→ {s1.shape[0]}x{s1.shape[1]} feature map", MAP_CMAP, map_norm, 12)
    if k == 0:
        ax.add_patch(Rectangle((-0.5, -0.5), 1, 1, **_PATCH_STYLE))
    # Thick lines mark the 2x2 pooling windows.
    for pos in np.arange(1.5, s1.shape[1] - 1, 2):
        ax.axvline(pos, color="black", linewidth=2.2)
    for pos in np.arange(1.5, s1.shape[0] - 1, 2):
        ax.axhline(pos, color="black", linewidth=2.2)
    s2 = maps["stride2"][k]
    _number_grid(slide.place(slide.xs[3], y, *s2.shape), s2, f"{name}, stride 2\n→ {s2.shape[0]}x{s2.shape[1]}",
                 MAP_CMAP, map_norm, 12)
    mp = maps["maxpool"][k]
    _number_grid(slide.place(slide.xs[4], y, *mp.shape), mp,
                 f"{name}: 2x2 max pooling\n→ {mp.shape[0]}x{mp.shape[1]}", MAP_CMAP, map_norm, 12)


def _draw_titles(slide: _Slide) -> None:
    slide.fig.text(0.5, 1 - 0.12 / slide.height,
                   "Convolution worked by hand: each 3x3 filter slides over the image (cross-correlation, "
                   "no padding, no bias)",
                   ha="center", va="top", fontsize=13)
    slide.fig.text(0.5, 1 - 0.45 / slide.height,
                   "each filter gives one channel of the output; max pooling keeps the largest value "
                   "of each 2x2 window (thick lines)",
                   ha="center", va="top", fontsize=10.5, color="0.25")


def _draw_colorbars(slide: _Slide, pixel_norm: Normalize, map_norm: Normalize) -> None:
    """One bar per scale, side by side right of the panels, centred vertically."""
    bar_h = min(3.2, (slide.band_bottom - slide.band_top) * 0.8)
    y0 = (slide.band_top + slide.band_bottom) / 2 - bar_h / 2
    for i, (norm, cmap, label) in enumerate(((pixel_norm, PIXEL_CMAP, "pixel / weight value"),
                                             (map_norm, MAP_CMAP, "feature map value"))):
        cax = slide.fig.add_axes(((slide.bars_x + i * 0.95) / slide.width, 1 - (y0 + bar_h) / slide.height,
                                  0.16 / slide.width, bar_h / slide.height))
        bar = slide.fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
        bar.set_label(label, fontsize=9)
        bar.ax.tick_params(labelsize=8)


def conv_example_figure(example: dict) -> Figure:
    """The worked example as a slide: input, filters, stride-1/stride-2 maps, max-pooled maps.

    One row per filter. Pixels and weights share one diverging scale, feature maps another.
    """
    image = np.asarray(example.get("image", LECTURE_IMAGE), dtype=float)
    filters = [np.asarray(f, dtype=float) for f in example.get("filters", LECTURE_FILTERS)]
    maps = {key: [np.asarray(m, dtype=float) for m in example[key]] for key in ("stride1", "stride2", "maxpool")}
    pixel_limit = max(1.0, float(np.abs(image).max()), *(float(np.abs(f).max()) for f in filters))
    map_limit = max(1.0, *(float(np.abs(m).max()) for group in maps.values() for m in group))
    pixel_norm = Normalize(-pixel_limit, pixel_limit)
    map_norm = Normalize(-map_limit, map_limit)

    slide = _slide(image, filters, maps)
    _draw_input(slide, image, filters[0].shape, pixel_norm)
    for k, f in enumerate(filters):
        _draw_filter_row(slide, k, f, maps, pixel_norm, map_norm)
    _draw_titles(slide)
    _draw_colorbars(slide, pixel_norm, map_norm)
    return slide.fig


def _conv_entry(name: str, input_shape, output_shape, kernel_size, filters: int,
                conv_weights: int, bias: bool) -> dict:
    inputs, outputs = int(np.prod(input_shape)), int(np.prod(output_shape))
    conv_biases = filters if bias else 0
    fc_weights, fc_biases = inputs * outputs, (outputs if bias else 0)
    conv_total, fc_total = conv_weights + conv_biases, fc_weights + fc_biases
    return {
        "name": name,
        "input_shape": [int(s) for s in input_shape],
        "output_shape": [int(s) for s in output_shape],
        "kernel_size": [int(s) for s in kernel_size],
        "filters": int(filters),
        "bias": bool(bias),
        "conv_weights": int(conv_weights),
        "conv_biases": int(conv_biases),
        "conv_parameters": int(conv_total),
        "fully_connected_weights": int(fc_weights),
        "fully_connected_biases": int(fc_biases),
        "fully_connected_parameters": int(fc_total),
        "ratio": round(fc_total / conv_total, 3),
    }


def conv_layer_shapes(model: nn.Module, input_shape) -> list[tuple[str, nn.Conv2d, list[int], list[int]]]:
    """(name, layer, input [C,H,W], output [C,H,W]) of every Conv2d, found by a dummy forward pass."""
    found: dict[str, tuple[list[int], list[int]]] = {}
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]

    def recorder(name):
        def hook(_module, inputs, output):
            found[name] = (list(inputs[0].shape[1:]), list(output.shape[1:]))
        return hook

    handles = [module.register_forward_hook(recorder(name)) for name, module in convs]
    was_training = model.training
    try:
        model.eval()
        dummy = torch.zeros(1, *[int(s) for s in input_shape], device=model_device(model))
        with torch.no_grad():
            model(dummy)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [(name, module, *found[name]) for name, module in convs if name in found]


def parameter_counts(model_cfg: dict, manifest: dict) -> dict:
    """Parameters of each convolution vs a fully connected layer with the same input and output sizes.

    The lecture example counts weights only on both sides (the lecture's filters have no
    bias): 18 vs 36 * 32 = 1152. The model's layers count weights and biases on both
    sides (the CNN's convolutions have biases; the matching dense layer gets one bias per output).
    """
    image = np.asarray(LECTURE_IMAGE)
    n_filters, kh, kw = np.asarray(LECTURE_FILTERS).shape
    lecture_out = [n_filters, image.shape[0] - kh + 1, image.shape[1] - kw + 1]
    layers = [_conv_entry("lecture example", [1, *image.shape], lecture_out, (kh, kw), n_filters,
                          n_filters * kh * kw, bias=False)]
    model = build_model(model_cfg, manifest)
    for name, conv, in_shape, out_shape in conv_layer_shapes(model, manifest["image_shape"]):
        layers.append(_conv_entry(name, in_shape, out_shape, conv.kernel_size, conv.out_channels,
                                  conv.weight.numel(), bias=conv.bias is not None))
    return {
        "layers": layers,
        "note": (
            "conv_parameters: weights (+ biases where the layer has them) of the convolution; "
            "fully_connected_parameters: a dense layer mapping the same input (all of "
            "input_shape) to the same output (all of output_shape), with biases exactly when "
            "the convolution has them; ratio = fully_connected / conv. The lecture example "
            "counts weights only (its filters have no bias)."
        ),
    }


def _compact(n: int) -> str:
    if n < 100_000:
        return f"{n:,}"
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def parameter_counts_figure(counts: dict) -> Figure:
    """Grouped bars (log scale) of convolution vs fully connected parameters per layer."""
    layers = counts["layers"]
    x = np.arange(len(layers))
    conv = np.array([layer["conv_parameters"] for layer in layers], dtype=float)
    dense = np.array([layer["fully_connected_parameters"] for layer in layers], dtype=float)
    fig = Figure(figsize=(max(6.5, 2.3 * len(layers) + 2), 5.2), layout="constrained")
    ax = fig.add_subplot()
    bar_w = 0.38
    conv_bars = ax.bar(x - bar_w / 2, conv, bar_w, label="convolution (small filters, shared weights)", color="#2b83ba")
    dense_bars = ax.bar(x + bar_w / 2, dense, bar_w, label="fully connected (same input and output)", color="#d7191c")
    for bars in (conv_bars, dense_bars):
        for rect in bars:
            ax.annotate(_compact(int(rect.get_height())), (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                        xytext=(0, 3), textcoords="offset points", ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylim(1, max(dense.max(), conv.max()) * 12)
    labels = []
    for layer in layers:
        shape_in = "x".join(str(s) for s in layer["input_shape"])
        shape_out = "x".join(str(s) for s in layer["output_shape"])
        extra = "" if layer["bias"] else ", weights only"
        labels.append(f"{layer['name']}\n{shape_in} → {shape_out}{extra}\nconv: {layer['ratio']:,.0f}x fewer")
    ax.set_xticks(x, labels, fontsize=9)
    ax.set_ylabel("parameters (log scale)")
    ax.legend(loc="upper left", fontsize=9)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.set_title("Convolution vs fully connected layer, same input and output shapes (C x H x W)\n"
                 "sparse connections + shared weights = far fewer parameters", fontsize=12)
    return fig


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """``model.conv1`` when it is a Conv2d, else the first Conv2d found."""
    layer = getattr(model, "conv1", None)
    if isinstance(layer, nn.Conv2d):
        return "conv1", layer
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise ValueError("first_layer_filters_figure: the model has no nn.Conv2d layer")


def first_layer_filters_figure(model: nn.Module, network: str | None = None) -> Figure:
    """The first convolution's filters as images, labelled by index; ``network`` names the
    network in the title.

    1 input channel: a diverging colormap with one symmetric scale shared by all filters.
    3 input channels: RGB, each filter min-max scaled to [0, 1] over its three channels (one
    scale per filter, as cs231n shows AlexNet's).
    """
    name, conv = first_conv(model)
    weights = conv.weight.detach().cpu().float()
    n, channels, kh, kw = weights.shape
    labels = [f"filter {i}" for i in range(n)]
    head = f"{network + ': f' if network else 'F'}irst convolution layer ({name}): {n} filters of {kh}x{kw}"
    if channels == 1:
        limit = float(weights.abs().max()) or 1.0
        return image_grid(weights, labels=labels, cmap=PIXEL_CMAP, vmin=-limit, vmax=limit, colorbar="weight",
                          title=f"{head}\nred positive, blue negative weights; one shared scale ±{limit:.2g}")
    if channels == 3:
        flat = weights.reshape(n, -1)
        low, high = flat.min(1).values.view(n, 1, 1, 1), flat.max(1).values.view(n, 1, 1, 1)
        scaled = (weights - low) / (high - low).clamp_min(1e-12)
        return image_grid(scaled, labels=labels,
                          title=f"{head}x3 as RGB\neach filter min-max scaled to [0, 1] over its 3 channels jointly")
    raise ValueError(f"first_layer_filters_figure: {channels} input channels; only 1 (gray) or 3 (RGB) can be drawn")


def write_conv_example(json_path: str | os.PathLike, png_path: str | os.PathLike) -> dict:
    """Compute the worked example and write its JSON and figure."""
    example = conv_worked_example()
    save_figure(conv_example_figure(example), png_path)
    write_json(json_path, example)
    return example


def write_parameter_counts(model_cfg: dict, manifest: dict, json_path: str | os.PathLike,
                           png_path: str | os.PathLike) -> dict:
    """Count parameters for the lecture example and the configured CNN; write JSON and figure."""
    counts = parameter_counts(model_cfg, manifest)
    save_figure(parameter_counts_figure(counts), png_path)
    write_json(json_path, counts)
    return counts


def write_first_layer_filters(model: nn.Module, png_path: str | os.PathLike, network: str | None = None) -> Path:
    """Draw the model's first-layer filters to ``png_path``."""
    return save_figure(first_layer_filters_figure(model, network), png_path)
