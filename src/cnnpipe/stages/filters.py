"""Per-filter activation maximization: the input each filter responds to most.

The lecture ("What does CNN learn?") defines the *degree of activation* of filter k as the
sum of its feature map, ``a^k = sum_ij a^k_ij``, and finds ``x* = argmax_x a^k`` by gradient
ascent on the input. Every filter of a layer is one sample of ONE batched ascent
(``cnnpipe.ascent.render_batched`` with one ``channel(layer, k)`` per sample, which the engine
fuses into a single gather, ``channels(layer, ks)``): by default pixels in [0, 1] clipped
after every Adam step, from grey + seeded noise, with no transforms or regularizers.

What ``a^k_ij`` is. For the trained CNN, layer ``convN`` names filter bank N and ``a^k`` sums
filter k's feature map *after its ReLU* (the module ``reluN``): the map the next layer sees.
Before the ReLU the sum is useless for the first layer: it is linear in x, the same weight
sum for every inner pixel, so its maximum is a plain white or black image; after the ReLU
the maxima are the oriented stripes and textures the lecture shows. For an ImageNet backbone
a^k sums channel k of the named layer's output as it is.

The leak. A filter that is silent (ReLU output 0 everywhere) on the start image gets no
gradient. During the ascent only, every ``nn.ReLU`` passes ``leak`` times its negative input
(a leaky ReLU, the idea of Lucid's "redirected ReLU"); with Adam's per-pixel step sizes even a
0.01 slope moves such an image as fast as any other. ``leak=0`` is plain ReLU.

The comparison. ``activation`` is ``a^k(x*)`` measured with the real network on the final
image without transforms; ``dataset_max`` is the largest ``a^k`` over every training image
(for an ImageNet backbone: over scikit-image's bundled photos, centre-cropped and resized to
the same size, since ImageNet is not here); both come from the same forward,
``layer_activations``. ``ratio = activation / dataset_max`` where ``dataset_max > 0``; where
it is <= 0 (a filter that no reference image turns on, or a layer that can be negative) a
ratio would mean nothing, so it is NaN: an empty CSV cell. x* *beats* the data when
``activation > dataset_max``, in both cases.

The data start. Ascent from noise finds a local maximum, and for a few filters that stays
below the best reference image (on the tiny test CNN: 0.71 of it for one filter, from any of
eight noise starts). With ``data_start``, each filter whose x* from noise does not beat the
reference images is ascended again from the reference image it responds to most, and that
result replaces x* where it ends higher. Every other x* stays the lecture's ascent from noise;
the table's ``start`` column and the figure say which is which (``noise`` or ``data``)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from cnnpipe.io.files import save_figure, write_csv
from cnnpipe.io.images import read_images, write_image_folder
from cnnpipe.methods.filter_search import (
    data_start_where_short,
    feature_map_layer,
    has_units,
    layer_activations,
    maximize_filters,
    prepare_model,
    reference_photos,
)
from cnnpipe.runtime.device import seed_everything, select_device

log = logging.getLogger(__name__)

# pandas and matplotlib are imported where they are used, so that importing this module
# (for the ascent alone, or in tests) does not pay a second for them.
if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
COLUMNS = ("filter", "activation", "dataset_max", "ratio", "start")
# A fully connected layer's table names its rows "unit" (neuron j) instead of "filter".
UNIT_COLUMNS = ("unit", *COLUMNS[1:])
_DECIMALS = 4


def filter_table(filters: Sequence[int], activation, maximum, start: Sequence[str] | None = None, *,
                 units: bool = False) -> pd.DataFrame:
    """``filter, activation, dataset_max, ratio, start``, values rounded to 4 decimals; ratio is
    NaN where dataset_max <= 0; start is where x* was ascended from (default: noise). With
    ``units`` (a fully connected layer) the first column is ``unit``."""
    import pandas as pd

    act = torch.as_tensor(activation, dtype=torch.float64).cpu().numpy()
    top = torch.as_tensor(maximum, dtype=torch.float64).cpu().numpy()
    if not len(filters) == len(act) == len(top):
        raise ValueError(f"filter_table: {len(filters)} filters, {len(act)} activations, {len(top)} maxima")
    positive = top > 0
    ratio = np.full(len(top), np.nan)
    ratio[positive] = act[positive] / top[positive]
    return pd.DataFrame({
        "unit" if units else "filter": np.asarray(filters, dtype=np.int64),
        "activation": act.round(_DECIMALS),
        "dataset_max": top.round(_DECIMALS),
        "ratio": ratio.round(_DECIMALS),
        "start": list(start) if start is not None else ["noise"] * len(act),
    }, columns=list(UNIT_COLUMNS if units else COLUMNS))


def beats(table: pd.DataFrame) -> np.ndarray:
    """Whether each x* activates its filter more than every reference image does."""
    return (table["activation"] > table["dataset_max"]).to_numpy()


def _number(value: float) -> str:
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return text.replace("-", "−")


def sublabel(row) -> str:
    """``5.38× max`` (a^k(x*) over the reference's largest a^k), or both values where that is <= 0."""
    text = f"{_number(row.ratio)}× max" if math.isfinite(row.ratio) else \
        f"{_number(row.activation)} vs {_number(row.dataset_max)}"
    return text + (" (data start)" if getattr(row, "start", "noise") == "data" else "")


def filters_figure(images: Tensor, table: pd.DataFrame, layer: str, *, reference: str, method: Sequence[str],
                   summed: str = "the filter's feature map after its ReLU") -> Figure:
    """The grid of x*, labelled "filter k" with the ratio below, on one shared [0, 1] scale.

    ``reference`` names what x* is compared with ("all 1437 training images"), ``method``
    says how x* was found (title lines), ``summed`` what a^k sums. Math is written without
    spaces so that a wrapped title never splits it.
    """
    from cnnpipe.report.plots import image_grid

    won, total = int(beats(table).sum()), len(table)
    units = "unit" in table
    a = "a^j" if units else "a^k"
    below = f"below each: ${a}(x^*)$ ÷ that largest ${a}$"
    if table["ratio"].isna().any():
        below += ", or both values where it is ≤ 0"
    if units:  # the lecture's neuron slide: each figure corresponds to a neuron
        head = [f"{layer}: $x^*=\\mathrm{{argmax}}_x\\,a^j$, the input that most activates neuron j",
                f"$a^j$: {summed}"]
    else:
        head = [f"{layer}: $x^*=\\mathrm{{argmax}}_x\\,a^k$, the input that most activates filter k",
                f"$a^k=\\Sigma_{{ij}}\\,a^k_{{ij}}$: {summed}, summed over all positions"]
    lines = [
        *head,
        f"{won} of {total} {'neurons' if units else 'filters'} beat {reference}: ${a}(x^*)$ > their largest ${a}$",
        *method,
        below,
    ]
    labels = [f"unit {k}" for k in table["unit"]] if units else [f"filter {k}" for k in table["filter"]]
    sublabels = [sublabel(row) for row in table.itertuples(index=False)]
    ncols = min(len(table), 8) if len(table) <= 64 else None
    return image_grid(images, labels=labels, sublabels=sublabels, title="\n".join(lines), ncols=ncols,
                      vmin=0.0, vmax=1.0)


def method_lines(steps: int, lr: float, parameterization: str, jitter: float, leak: float,
                 data_start: bool = False, units: bool = False) -> list[str]:
    """How x* was found, for the figure title (``units``: a fully connected layer's neurons)."""
    image = "pixels clipped to [0, 1]" if parameterization == "pixel" else "a Fourier-space image"
    first = f"gradient ascent from grey + noise: {steps} Adam steps, lr {lr:g}, {image}"
    lines = [first + (f", jitter {jitter:g}" if jitter > 0 else "")]
    if data_start:
        lines.append(f"where that stays below the data: again from the reference image with the largest "
                     f"${'a^j' if units else 'a^k'}$, kept if higher")
    if leak > 0:
        lines.append(f"(while ascending, ReLUs leak {leak:g} so that a silent {'neuron' if units else 'filter'} "
                     "still gets a gradient)")
    return lines


def _load(settings: Mapping, model_path, data_path, cache_dir) -> tuple[nn.Module, Tensor, str]:
    """(model, reference images, their description) for the configured backbone: the trained
    CNN with its training images, any other network with the bundled photos."""
    from cnnpipe.networks.spec import TRAINED, parse_backbone

    spec = parse_backbone(settings.get("backbone", TRAINED), "filters.backbone", must_exist=False)
    if spec.kind == TRAINED:
        from cnnpipe.data.prepare import load_prepared
        from cnnpipe.networks.checkpoint import load_model

        if model_path is None or data_path is None:
            raise ValueError("filters with backbone 'trained' need model_path and data_path")
        images = load_prepared(data_path)["train_images"]
        return load_model(model_path), images, f"all {len(images)} training images"
    from cnnpipe.networks.build import load_backbone

    model = load_backbone(spec, cache_dir=cache_dir, key="filters.backbone")
    if spec.kind == "checkpoint":  # another run's CNN: its own channels and size
        channels, size = int(model.image_shape[0]), int(model.image_shape[-1])
    else:
        channels, size = 3, int(settings["image_size"] or model.input_size)  # null: the native size
    photos = reference_photos(size, channels)
    return model, photos, f"the {len(photos)} scikit-image photos"


def run_filters(
    layer: str,
    settings: Mapping,
    *,
    seed: int,
    png_path: str | os.PathLike,
    csv_path: str | os.PathLike,
    image_dir: str | os.PathLike,
    device_name: str = "cpu",
    model_path: str | os.PathLike | None = None,
    data_path: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The rule: maximize every filter of ``layer``, save each x* as ``image_dir/<unit>.png``,
    compare those files, read back, with the data, and write the grid (from the files) and CSV.

    ``settings`` is the ``filters`` config section (``layers`` is not read).
    """
    seed_everything(seed)
    device = select_device(device_name)
    model, reference, described = _load(settings, model_path, data_path, cache_dir)
    prepare_model(model, device)
    target = feature_map_layer(model, layer)
    data_acts = layer_activations(model, target, reference)
    filters = list(range(min(int(settings["max_filters"]), data_acts.shape[1])))
    steps, lr, leak = int(settings["steps"]), float(settings["lr"]), float(settings["leak"])
    parameterization, jitter = settings["parameterization"], float(settings["jitter"])
    shape = tuple(reference.shape[1:])
    units = has_units(model, target, reference[0])
    log.info("%s: maximizing %s at %s for %d of %d %s on %s images, %d steps", layer, "a^j" if units else "a^k",
             target, len(filters), data_acts.shape[1], "units" if units else "filters", "x".join(map(str, shape)),
             steps)

    def ascend(ks, start_images=None):
        return maximize_filters(
            model, target, ks, shape, steps=steps, lr=lr, parameterization=parameterization, jitter=jitter,
            leak=leak, memory_mb=float(settings["memory_mb"]), seed=seed, device=device, progress=progress,
            start_images=start_images,
        )

    images, activation, start = _maximized(ascend, model, target, filters, reference, data_acts,
                                           settings.get("data_start"))
    images, activation = _read_back(model, target, filters, images, image_dir)
    table = filter_table(filters, activation, data_acts.max(dim=0).values[: len(filters)], start, units=units)
    _log_beats(layer, table, units, described)
    summed = _summed(settings, target, units)
    # The title mentions the leak only where there is a ReLU to leak (EfficientNet has ReLU6).
    leaked = leak if any(isinstance(m, nn.ReLU) for m in model.modules()) else 0.0
    figure = filters_figure(images, table, layer, reference=described, summed=summed,
                            method=method_lines(steps, lr, parameterization, jitter, leaked,
                                                bool(settings.get("data_start")), units))
    save_figure(figure, png_path)
    write_csv(csv_path, table)
    return table


def _maximized(ascend, model: nn.Module, target: str, filters: list[int], reference: Tensor, data_acts: Tensor,
               data_start) -> tuple[Tensor, Tensor, list[str]]:
    """x* of every filter from noise, and with ``data_start`` from the data where that falls
    short (``data_start_where_short``): (images, their a^k, where each started)."""
    images = ascend(filters).images
    # Measured again with the real ReLUs and no transforms, by the same forward as the data.
    index = torch.arange(len(filters))
    activation = layer_activations(model, target, images)[index, torch.as_tensor(filters)]
    start = ["noise"] * len(filters)
    if data_start:
        images, activation, start = data_start_where_short(ascend, model, target, filters, images, activation,
                                                           reference, data_acts)
    return images, activation, start


def _read_back(model: nn.Module, target: str, filters: list[int], images: Tensor, image_dir) -> tuple[Tensor, Tensor]:
    """Save each x* as ``image_dir/<filter>.png`` and read the files back: (images, their a^k)."""
    # Every number and the grid are those of the 8-bit files a user gets.
    mode = "L" if images.shape[1] == 1 else "RGB"
    images = read_images(write_image_folder(images, [str(k) for k in filters], image_dir), mode)
    index = torch.arange(len(filters))
    return images, layer_activations(model, target, images)[index, torch.as_tensor(filters)]


def _log_beats(layer: str, table: pd.DataFrame, units: bool, described: str) -> None:
    """Log how many x* beat the reference images, and warn naming those that do not."""
    won = beats(table)
    log.info("%s: %d of %d %s beat %s; ratio min %s, median %s", layer, int(won.sum()), len(table),
             "units" if units else "filters",
             described, table["ratio"].min(), table["ratio"].median())
    if not won.all():
        log.warning("%s: %s %s did not beat %s", layer, "units" if units else "filters",
                    table[table.columns[0]][~won].tolist(), described)


def _summed(settings: Mapping, target: str, units: bool) -> str:
    """What a^k (a^j) sums, for the figure's title."""
    trained = settings.get("backbone", "trained") == "trained"
    if units:
        return "neuron j's output after its ReLU" if trained else f"unit j of layer {target}"
    return "the filter's feature map after its ReLU" if trained else f"channel k of layer {target}"
