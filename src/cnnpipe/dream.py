"""DeepDream, the stage: dream each photo file, then summarize them all.

The algorithm is :mod:`cnnpipe.deepdream`; this module reads a photo, runs it and writes
what the rules promise: the dreamed PNG (the photo's size) and a one-row CSV per photo, then
one CSV of every row and a before/after figure.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from cnnpipe.backbones import load_backbone
from cnnpipe.deepdream import DreamResult, deep_dream, resize
from cnnpipe.device import seed_everything, select_device
from cnnpipe.fileio import save_figure, write_csv
from cnnpipe.images import load_image, pil_to_tensor, save_png

log = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "dream_file",
    "run_dream_chunk",
    "write_summary",
]

# CSV columns, in order.
COLUMNS = [
    "name", "file", "backbone", "layers", "octaves", "octave_scale", "steps", "lr", "jitter",
    "tile", "width", "height", "dream_width", "dream_height", "energy_before", "energy_after",
    "energy_ratio",
]


# --------------------------------------------------------------------------- one photo


def _row(image_path: Path, name: str | None, model: nn.Module, settings: Mapping, size: tuple[int, int],
         result: DreamResult) -> dict:
    """The photo's CSV row, in ``COLUMNS`` order."""
    height, width = size
    return {
        "name": name if name is not None else image_path.stem,
        "file": image_path.name,
        "backbone": getattr(model, "backbone_name", type(model).__name__),
        "layers": "+".join(result.layers),
        "octaves": len(result.sizes),
        "octave_scale": float(settings["octave_scale"]),
        "steps": int(settings["steps"]),
        "lr": float(settings["lr"]),
        "jitter": int(settings["jitter"]),
        "tile": int(settings["tile"]),
        "width": int(width),
        "height": int(height),
        "dream_width": result.sizes[0][1],
        "dream_height": result.sizes[0][0],
        "energy_before": round(result.energy_before, 6),
        "energy_after": round(result.energy_after, 6),
        "energy_ratio": round(result.energy_after / result.energy_before, 4) if result.energy_before else float("nan"),
    }


def dream_file(
    image_path: str | os.PathLike,
    output_png: str | os.PathLike,
    output_csv: str | os.PathLike,
    model: nn.Module,
    settings: Mapping,
    *,
    name: str | None = None,
    seed: int = 0,
    device=None,
    progress: bool = True,
) -> dict:
    """DeepDream one image file: write the dreamed PNG (the input's size) and a one-row CSV.

    ``settings`` is the ``dream`` config section (backbone, layers, octaves, octave_scale,
    steps, lr, jitter, tile, max_side). A file that is not a readable image raises
    :class:`~cnnpipe.images.ImageError` naming it, before anything is written.
    """
    image_path = Path(image_path)
    photo = pil_to_tensor(load_image(image_path, "RGB"))
    height, width = photo.shape[-2:]
    log.info("%s: %dx%d", image_path, width, height)
    began = time.perf_counter()
    result = deep_dream(
        model, photo, layers=settings.get("layers"), octaves=int(settings["octaves"]),
        octave_scale=float(settings["octave_scale"]), steps=int(settings["steps"]), lr=float(settings["lr"]),
        jitter=int(settings["jitter"]), tile=int(settings["tile"]), max_side=settings.get("max_side"),
        seed=seed, device=device, progress=progress,
    )
    for layer, (b, a) in result.layer_energy.items():
        log.info("layer %s: mean a^2 %.4g -> %.4g", layer, b, a)
    log.info("energy %.4g -> %.4g in %.1f s", result.energy_before, result.energy_after, time.perf_counter() - began)
    row = _row(image_path, name, model, settings, (height, width), result)
    save_png(result.image, output_png)
    write_csv(output_csv, pd.DataFrame([row], columns=COLUMNS))
    return row


def run_dream_chunk(
    images: Mapping[str, str | os.PathLike],
    folder: str | os.PathLike,
    settings: Mapping,
    *,
    seed: int = 0,
    device_name: str = "auto",
    cache_dir=None,
    checkpoint=None,
) -> list[dict]:
    """Rule `dream_chunk`: DeepDream every image of a chunk (name -> file) in this one process,
    the network loaded once. Each image gets ``folder/<name>.png``, ``.csv``, ``.rst`` (its
    caption's key numbers) and ``.log`` (its own log lines).
    The seed is set again before each image, so an image's result does not depend on the
    other images of its chunk or on their order."""
    from cnnpipe.captions import dream_key_numbers, write_caption
    from cnnpipe.chunks import ERROR_SUFFIX
    from cnnpipe.fileio import atomic_write_text
    from cnnpipe.logs import image_log

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    seed_everything(seed)
    model = load_backbone(settings["backbone"], cache_dir=cache_dir, checkpoint=checkpoint, key="dream.backbone")
    device = select_device(device_name)
    loaded = time.perf_counter() - began
    log.info("start-up: network %s loaded in %.2f s, shared by the chunk's %d image(s)",
             getattr(model, "backbone_name", type(model).__name__), loaded, len(images))
    rows, computing = [], 0.0
    for name, path in images.items():
        start = time.perf_counter()
        try:
            with image_log(folder / f"{name}.log"):
                seed_everything(seed)
                rows.append(dream_file(path, folder / f"{name}.png", folder / f"{name}.csv", model, settings,
                                       name=name, seed=seed, device=device))
                log.info("%s: done; it shared its job's start-up with %d other image(s)", name, len(images) - 1)
        except Exception as error:  # one bad image must not cost its chunk-mates their results
            log.exception("%s: failed; the other images of this chunk go on", name)
            atomic_write_text(folder / f"{name}{ERROR_SUFFIX}", f"{error}\n")
            continue
        finally:
            computing += time.perf_counter() - start
        write_caption(folder / f"{name}.rst", dream_key_numbers(folder / f"{name}.csv"))
    log.info("chunk: %d image(s) in %.2f s of DeepDream (reading and writing included), %.2f s per image",
             len(images), computing, computing / max(1, len(images)))
    return rows


# --------------------------------------------------------------------------- summary


def _letterbox(image: Tensor, box: tuple[int, int]) -> Tensor:
    """``image`` [3, H, W] scaled to fit ``box`` (H, W), centred on white."""
    height, width = image.shape[-2:]
    factor = min(box[0] / height, box[1] / width)
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    small = resize(image[None].float(), size)[0].clamp(0, 1)
    canvas = torch.ones(3, *box)
    top, left = (box[0] - size[0]) // 2, (box[1] - size[1]) // 2
    canvas[:, top : top + size[0], left : left + size[1]] = small
    return canvas


def write_summary(
    csv_paths: Sequence[str | os.PathLike],
    originals: Sequence[str | os.PathLike],
    dreams: Sequence[str | os.PathLike],
    output_csv: str | os.PathLike,
    output_png: str | os.PathLike,
    *,
    max_images: int = 6,
    thumb: int = 480,
) -> pd.DataFrame:
    """All per-image rows in one CSV (sorted by name), and a figure of the first
    ``max_images`` photos: original and dreamed side by side, with their energies."""
    if not csv_paths:
        raise ValueError("write_summary: no DeepDream results to summarize")
    if not len(csv_paths) == len(originals) == len(dreams):
        raise ValueError("write_summary: one CSV, original and dream per image")
    frames = [pd.read_csv(path) for path in csv_paths]
    table = pd.concat(frames, ignore_index=True)
    order = np.argsort(table["name"].astype(str).to_numpy(), kind="stable")
    table = table.iloc[order].reset_index(drop=True)
    write_csv(output_csv, table)

    shown = [int(i) for i in order[:max_images]]
    pairs = [(pil_to_tensor(load_image(originals[i])), pil_to_tensor(load_image(dreams[i]))) for i in shown]
    aspect = min(2.0, max(p[0].shape[-1] / p[0].shape[-2] for p in pairs))
    box = (round(thumb / aspect), thumb)
    panels, labels, sublabels = [], [], []
    for (original, dreamed), i in zip(pairs, shown):
        row = frames[i].iloc[0]
        panels += [_letterbox(original, box), _letterbox(dreamed, box)]
        labels += [f"{row['name']}: photo", f"{row['name']}: DeepDream"]
        sublabels += [f"energy {row['energy_before']:.3g}",
                      f"energy {row['energy_after']:.3g} (x{row['energy_after'] / row['energy_before']:.2f})"]
    first = frames[shown[0]].iloc[0]
    octaves = int(first["octaves"])
    title = (f"DeepDream with {first['backbone']} at {first['layers']}\n"
             f"{octaves} octave{'s' if octaves != 1 else ''} x {first['steps']} steps; energy = mean a\u00b2")
    if len(table) > len(shown):
        title += f"; first {len(shown)} of {len(table)} images"
    from cnnpipe.plots import image_grid  # matplotlib: only the summary draws

    fig = image_grid(torch.stack(panels), labels, title, ncols=2, sublabels=sublabels)
    save_figure(fig, output_png, dpi=240)
    return table
