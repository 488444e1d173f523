"""The rule ``atlas_chunk``: x* and the diverse set of each unit of a chunk (``layer:unit``
names), the network loaded once, with verdicts for class units. Apart from the dataset pass
(:mod:`cnnpipe.stages.atlas`), so that what only the chunks use (the verdicts' judges) is not
a code input of the dataset pass."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnpipe.io.files import write_rows
from cnnpipe.io.names import file_slug as slug
from cnnpipe.methods import atlas
from cnnpipe.methods.filter_search import feature_map_layer, prepare_model
from cnnpipe.runtime.device import seed_everything, select_device
from cnnpipe.stages import atlas_verdict
from cnnpipe.stages.atlas import MEMBER_COLUMNS, load_network, write_strip

log = logging.getLogger(__name__)


def _by_layer(units: Sequence[str]) -> dict[str, list[int]]:
    """``layer:unit`` names -> layer -> its units, sorted."""
    layers: dict[str, list[int]] = {}
    for name in units:
        layer, unit = name.rsplit(":", 1)
        layers.setdefault(layer, []).append(int(unit))
    return {layer: sorted(found) for layer, found in layers.items()}


def run_atlas_chunk(units: Sequence[str], settings: Mapping, out_dir: str | os.PathLike, *, seed: int,
                    device_name: str = "cpu", model_path=None, cache_dir=None, data_path=None,
                    progress: bool = False) -> list[dict]:
    """The rule ``atlas_chunk``: x* and the diverse set of every unit (``layer:unit``) of the
    chunk, the network loaded once; see the module docstring for the files. Units of a class
    scores layer also get ``verdicts.csv`` (:mod:`cnnpipe.stages.atlas_verdict`; ``data_path``:
    the trained CNN's training data, for its pixel classifier)."""
    seed_everything(seed)
    model, shape = load_network(settings, model_path, cache_dir)
    prepare_model(model, select_device(device_name))
    search = {key: settings[key] for key in ("steps", "lr", "parameterization", "jitter", "leak", "memory_mb",
                                             "diverse", "diversity")}
    search.update(seed=seed, progress=progress)
    search["parameterization"] = resolve_parameterization(settings["parameterization"], settings["backbone"])
    if search["parameterization"] != settings["parameterization"]:
        search["jitter"] = max(float(settings["jitter"]), AUTO_FFT_JITTER)
    out, rows, verdicts, judges = Path(out_dir), [], [], None
    out.mkdir(parents=True, exist_ok=True)
    for layer, found in _by_layer(units).items():
        target = feature_map_layer(model, layer, "atlas.layers")
        images, values = atlas.xstar_and_diverse(model, target, found, shape, search)
        if atlas_verdict.is_class_layer(model, target):
            judges = judges or atlas_verdict.chunk_judges(model, settings, data_path=data_path, cache_dir=cache_dir)
            verdicts += atlas_verdict.class_verdicts(layer, found, images, judges,
                                                     atlas_verdict.class_names_of(model, settings))
        for i, unit in enumerate(found):
            write_strip([list(images[i])], out / slug(layer) / f"{unit}.png")
            rows += [{"layer": layer, "unit": unit, "member": m, "activation": round(float(values[i, m]), 4)}
                     for m in range(values.shape[1])]
        log.info("%s: x* and %d diverse members for %d units", layer, values.shape[1] - 1, len(found))
    write_rows(out / "members.csv", rows, MEMBER_COLUMNS)
    if verdicts:
        write_rows(out / "verdicts.csv", verdicts, atlas_verdict.VERDICT_COLUMNS)
    return rows


# atlas.parameterization "auto": the lecture's plain pixel ascent for a cnnpipe CNN (small
# grey images, where it gives readable x*), a decorrelated Fourier image with jitter for any
# other network (ImageNet networks, whose pixel x* are high-frequency noise).
AUTO_FFT_JITTER = 0.05


def resolve_parameterization(parameterization: str, backbone) -> str:
    """``atlas.parameterization`` with ``auto`` resolved for ``backbone``: ``pixel`` for the
    trained CNN, ``fft`` for any other network (whose ascent then also gets at least
    ``AUTO_FFT_JITTER`` of jitter: a shift of up to 5% of the side, 6 px at 128 px)."""
    if parameterization != "auto":
        return parameterization
    return "pixel" if backbone == "trained" else "fft"
