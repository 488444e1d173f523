"""Shared figure helpers: labelled image grids, learning curves, confusion matrices.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so no figure
is registered globally (nothing leaks if a caller forgets to close it) and any backend
works; save it with :func:`cnnpipe.io.files.save_figure`."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter
from mpl_toolkits.axes_grid1 import make_axes_locatable

TITLE_SIZE = 12
LABEL_SIZE = 10


def _to_numpy(values) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().float().numpy()
    return np.asarray(values, dtype=np.float32)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def default_ncols(n: int) -> int:
    """One row up to 8 panels; beyond, the width between square and 2:1 that leaves fewest blanks."""
    if n <= 8:
        return max(1, n)
    low, high = math.ceil(math.sqrt(n)), math.ceil(math.sqrt(2 * n))
    return min(range(low, high + 1), key=lambda cols: (-n % cols, cols))


def _wrap_title(title: str, width_in: float, fontsize: float) -> str:
    chars = max(24, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in title.split("\n"))


def _text_list(values, n: int, what: str) -> list[str] | None:
    if values is None:
        return None
    values = [str(v) for v in values]
    if len(values) != n:
        raise ValueError(f"image_grid: {len(values)} {what} for {n} images")
    return values


def image_grid(
    images,
    labels: Sequence | None = None,
    title: str | None = None,
    ncols: int | None = None,
    cmap: str = "gray",
    vmin: float = 0.0,
    vmax: float = 1.0,
    sublabels: Sequence | None = None,
    *,
    colorbar: str | bool | None = None,
) -> Figure:
    """Images [N, C, H, W] (C = 1 or 3) as labelled panels on one fixed scale [vmin, vmax].

    Values are clipped to [vmin, vmax]; 1-channel panels use ``cmap``, 3-channel panels
    are shown as RGB after mapping [vmin, vmax] to [0, 1]. ``labels`` go above each
    panel, ``sublabels`` below. ``colorbar`` (a label, or True) adds a colourbar for
    1-channel images. All panels share one axes, which keeps 512 panels fast.
    """
    array = _to_numpy(images)
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise ValueError(f"image_grid: expected images as [N, C, H, W] with C = 1 or 3, got shape {list(array.shape)}")
    n, channels, height, width = array.shape
    if n == 0:
        raise ValueError("image_grid: no images to show")
    if not vmax > vmin:
        raise ValueError(f"image_grid: vmax ({vmax}) must be greater than vmin ({vmin})")
    labels = _text_list(labels, n, "labels")
    sublabels = _text_list(sublabels, n, "sublabels")
    ncols = default_ncols(n) if ncols is None else max(1, min(int(ncols), n))
    layout = _GridLayout.of(n, ncols, height, width, labels, sublabels, bool(colorbar) and channels == 1, title)
    fig = Figure(figsize=(layout.fig_w, layout.fig_h))
    ax = fig.add_axes((0.0, 0.0, layout.grid_w / layout.fig_w, layout.grid_h / layout.fig_h))
    norm = Normalize(vmin=vmin, vmax=vmax)
    _draw_panels(ax, array, layout, labels, sublabels, cmap, norm)
    if layout.title:
        fig.text(0.5 * layout.grid_w / layout.fig_w, 1.0 - 0.06 / layout.fig_h, layout.title, ha="center", va="top",
                 fontsize=layout.title_size)
    if layout.colorbar:
        _add_colorbar(fig, layout, norm, cmap, colorbar)
    return fig


@dataclass(frozen=True)
class _GridLayout:
    """Sizes in inches of a panel grid: the axes' data coordinates are inches too, so
    placement is exact."""

    ncols: int
    panel_w: float
    panel_h: float
    font: float
    top: float
    gap_x: float
    cell_w: float
    cell_h: float
    grid_w: float
    grid_h: float
    colorbar: bool
    title: str | None
    title_size: float
    fig_w: float
    fig_h: float

    @classmethod
    def of(cls, n, ncols, height, width, labels, sublabels, colorbar: bool, title) -> _GridLayout:
        nrows = math.ceil(n / ncols)
        panel_w = _clamp(12.0 / ncols, 0.45, 2.0)
        panel_h = panel_w * height / width
        longest = max([len(s) for s in (labels or []) + (sublabels or [])] + [6])
        font = _clamp(min(panel_w * 72 / (0.62 * longest), panel_w * 72 * 0.2), 4.0, LABEL_SIZE)
        line = font * 1.35 / 72
        top = (line + 0.04) if labels else 0.04
        bottom = (line + 0.03) if sublabels else 0.0
        gap_x = max(0.06, 0.08 * panel_w)
        cell_w, cell_h = panel_w + gap_x, top + panel_h + bottom + 0.08
        grid_w, grid_h = ncols * cell_w, nrows * cell_h
        bar_w = 1.0 if colorbar else 0.0
        title_size = TITLE_SIZE if panel_w >= 0.8 or grid_w >= 6 else 10
        title = _wrap_title(title, max(grid_w, 3.0), title_size) if title else None
        title_h = (title.count("\n") + 1) * title_size * 1.4 / 72 + 0.12 if title else 0.0
        return cls(ncols, panel_w, panel_h, font, top, gap_x, cell_w, cell_h, grid_w, grid_h, colorbar, title,
                   title_size, grid_w + bar_w, grid_h + title_h)


def _draw_panels(ax, array, layout: _GridLayout, labels, sublabels, cmap, norm) -> None:
    """Every image at its place, its label above and sublabel below, in one axes."""
    vmin, vmax = norm.vmin, norm.vmax
    frames = []
    for index in range(array.shape[0]):
        row, col = divmod(index, layout.ncols)
        x0, y0 = col * layout.cell_w + layout.gap_x / 2, row * layout.cell_h + layout.top
        extent = (x0, x0 + layout.panel_w, y0 + layout.panel_h, y0)
        if array.shape[1] == 1:
            ax.imshow(np.clip(array[index, 0], vmin, vmax), cmap=cmap, norm=norm, extent=extent,
                      interpolation="nearest", aspect="auto")
        else:
            rgb = np.clip((array[index].transpose(1, 2, 0) - vmin) / (vmax - vmin), 0.0, 1.0)
            ax.imshow(rgb, extent=extent, interpolation="nearest", aspect="auto")
        frames.append(Rectangle((x0, y0), layout.panel_w, layout.panel_h))
        if labels:
            ax.text(x0 + layout.panel_w / 2, y0 - 0.03, labels[index], ha="center", va="bottom", fontsize=layout.font)
        if sublabels:
            ax.text(x0 + layout.panel_w / 2, y0 + layout.panel_h + 0.03, sublabels[index], ha="center", va="top",
                    fontsize=layout.font, color="0.25")
    # A thin frame keeps panels apart even where their edge pixels match the background.
    ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="0.6", linewidth=0.5))
    ax.set_xlim(0, layout.grid_w)
    ax.set_ylim(layout.grid_h, 0)
    ax.set_axis_off()


def _add_colorbar(fig, layout: _GridLayout, norm, cmap, colorbar) -> None:
    grid_w, grid_h, fig_w, fig_h = layout.grid_w, layout.grid_h, layout.fig_w, layout.fig_h
    bar_h = _clamp(grid_h * 0.8, min(grid_h, 1.2), 5.0)
    cax = fig.add_axes(((grid_w + 0.15) / fig_w, (grid_h - bar_h) / 2 / fig_h, 0.15 / fig_w, bar_h / fig_h))
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax)
    if isinstance(colorbar, str):
        bar.set_label(colorbar, fontsize=9)
    bar.ax.tick_params(labelsize=8)


def learning_curve(metrics) -> Figure:
    """Loss and accuracy (fractions in the table, drawn in %) per epoch, train vs test.

    ``metrics`` is a DataFrame with ``epoch, train_loss, train_accuracy, test_loss,
    test_accuracy`` (``lr`` and ``seconds`` are optional; seconds, when present, go in the title).
    """
    required = ["epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy"]
    missing = [c for c in required if c not in metrics.columns]
    if missing:
        raise ValueError(f"learning_curve: metrics lack the columns {missing}")
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = metrics["epoch"].to_numpy()
    styles = {"train": dict(color="C0", marker="o", linestyle="-"), "test": dict(color="C1", marker="s", linestyle="--")}
    for split in ("train", "test"):
        loss_ax.plot(epochs, metrics[f"{split}_loss"].to_numpy(), label=split, markersize=4, **styles[split])
        acc_ax.plot(epochs, 100 * metrics[f"{split}_accuracy"].to_numpy(), label=split, markersize=4, **styles[split])
    loss_ax.set(title="Loss (cross-entropy)", xlabel="epoch", ylabel="loss")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best")
    if len(metrics):
        final = metrics.iloc[-1]
        summary = f"final test accuracy {100 * final['test_accuracy']:.1f}% after {int(final['epoch'])} epochs"
        if "seconds" in metrics.columns:
            summary += f", {float(metrics['seconds'].sum()):.0f} s of training"
    else:
        summary = "no epochs recorded"
        for ax in (loss_ax, acc_ax):
            ax.text(0.5, 0.5, "no epochs recorded", transform=ax.transAxes, ha="center", va="center")
    fig.suptitle(f"Learning curve: {summary}", fontsize=TITLE_SIZE)
    return fig


def confusion_matrix_figure(matrix, class_names: Sequence, title: str = "Confusion matrix (test set)") -> Figure:
    """Counts in the cells, colour = share of the true class (row-normalized), accuracy in the title."""
    counts = np.asarray(matrix)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion_matrix_figure: matrix of shape {counts.shape} for {k} classes")
    names = [str(c) for c in class_names]
    row_sums = counts.sum(axis=1, keepdims=True)
    shares = counts / np.maximum(row_sums, 1)
    total, correct = int(counts.sum()), int(np.trace(counts))
    accuracy = f"{100 * correct / total:.1f}% ({correct}/{total})" if total else "n/a (no samples)"

    size = _clamp(0.55 * k + 2.5, 4.5, 14.0)
    # A fixed layout, not "constrained": that one shifts between draws, so a second save differed.
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_axes((0.12, 0.12, 0.72, 0.76))
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    if k <= 40:
        font = _clamp(12 - k / 4, 5, 10)
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=font,
                        color="white" if shares[i, j] > 0.55 else "black")
    slanted = max(map(len, names), default=0) > 3
    ax.set_xticks(range(k), names, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(k), names)
    ax.tick_params(labelsize=_clamp(12 - k / 5, 5, 10))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title}\noverall accuracy {accuracy}", fontsize=TITLE_SIZE)
    bar = fig.colorbar(image, cax=make_axes_locatable(ax).append_axes("right", size="4%", pad=0.2))
    bar.set_label("share of the true class (row-normalized)")
    return fig
