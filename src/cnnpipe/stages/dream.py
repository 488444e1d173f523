"""DeepDream, the stage: dream each photo file of a chunk.

The algorithm is :mod:`cnnpipe.methods.deepdream`; this module reads a photo, runs it and writes
what the rules promise: the dreamed PNG (the photo's size) and a one-row CSV per photo. The
table and figure of them all are :mod:`cnnpipe.stages.dream_summary` (no torch)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnpipe.io.files import write_rows
from cnnpipe.io.images import load_image, pil_to_tensor, save_png
from cnnpipe.methods.deepdream import DreamResult, deep_dream_batch
from cnnpipe.networks.build import load_backbone
from cnnpipe.runtime.device import seed_everything, select_device

log = logging.getLogger(__name__)

# CSV columns, in order.
COLUMNS = [
    "name", "file", "backbone", "layers", "octaves", "octave_scale", "steps", "lr", "jitter",
    "tile", "width", "height", "dream_width", "dream_height", "energy_before", "energy_after",
    "energy_ratio",
]


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


def _dream_kwargs(settings: Mapping) -> dict:
    """deep_dream_batch's settings from the ``dream`` config section."""
    return {
        "layers": settings.get("layers"), "octaves": int(settings["octaves"]),
        "octave_scale": float(settings["octave_scale"]), "steps": int(settings["steps"]),
        "lr": float(settings["lr"]), "jitter": int(settings["jitter"]), "tile": int(settings["tile"]),
        "max_side": settings.get("max_side"),
    }


def _write_result(image_path: Path, name: str | None, photo: Tensor, result: DreamResult, seconds: float,
                  output_png, output_csv, model: nn.Module, settings: Mapping) -> dict:
    for layer, (b, a) in result.layer_energy.items():
        log.info("layer %s: mean a^2 %.4g -> %.4g", layer, b, a)
    log.info("energy %.4g -> %.4g in %.1f s", result.energy_before, result.energy_after, seconds)
    row = _row(image_path, name, model, settings, tuple(photo.shape[-2:]), result)
    save_png(result.image, output_png)
    write_rows(output_csv, [row], COLUMNS)
    return row


def _read_photo(image_path: Path) -> Tensor:
    photo = pil_to_tensor(load_image(image_path, "RGB"))
    log.info("%s: %dx%d", image_path, photo.shape[-1], photo.shape[-2])
    return photo


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
    :class:`~cnnpipe.io.images.ImageError` naming it, before anything is written.
    """
    image_path = Path(image_path)
    photo = _read_photo(image_path)
    began = time.perf_counter()
    (result,) = deep_dream_batch(model, [photo], seed=seed, device=device, progress=progress,
                                 **_dream_kwargs(settings))
    return _write_result(image_path, name, photo, result, time.perf_counter() - began, output_png, output_csv,
                         model, settings)


def batch_size(setting, device: torch.device) -> int:
    """Images per forward pass for ``dream.batch``: a number, or "auto": 8 on CUDA (where one
    image leaves most of the GPU idle), else 1 (the CPU is busy with one image, and a batch
    would change the rounding, hence the bytes, with the chunk's make-up)."""
    if setting == "auto":
        return 8 if torch.device(device).type == "cuda" else 1
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"dream.batch must be a positive integer or 'auto', got {setting!r}")
    return setting


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
    The seed is set again before each image (each batch), so an image's result does not depend
    on the other images of its chunk or on their order; with ``dream.batch`` > 1 (on a GPU,
    by default) photos of one size are dreamed together, and the batch's lines go to each of
    its images' logs."""
    from contextlib import ExitStack

    from cnnpipe.io.files import atomic_write_text
    from cnnpipe.report.captions import dream_key_numbers, write_caption
    from cnnpipe.runtime.chunks import ERROR_SUFFIX, batches
    from cnnpipe.runtime.logs import image_log

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    seed_everything(seed)
    model = load_backbone(settings["backbone"], cache_dir=cache_dir, checkpoint=checkpoint, key="dream.backbone")
    device = select_device(device_name)
    per_batch = batch_size(settings.get("batch", 1), device)
    loaded = time.perf_counter() - began
    log.info("start-up: network %s loaded in %.2f s, shared by the chunk's %d image(s); %d image(s) per batch",
             getattr(model, "backbone_name", type(model).__name__), loaded, len(images), per_batch)

    def failed(names, error):  # one bad image must not cost its chunk-mates their results
        log.exception("%s: failed; the other images of this chunk go on", ", ".join(names))
        for name in names:
            atomic_write_text(folder / f"{name}{ERROR_SUFFIX}", f"{error}\n")

    def read(names) -> bool:
        for name in names:
            try:
                with image_log(folder / f"{name}.log"):
                    photos[name] = _read_photo(Path(images[name]))
            except Exception as error:
                failed([name], error)
        return all(name in photos for name in names)

    rows, computing, photos = [], 0.0, {}
    if per_batch == 1:  # each photo read just before it is dreamed: one photo in memory at a time
        plan = [[name] for name in images]
    else:  # all read first, to batch photos of one size (the chunk's photos in memory at once)
        start = time.perf_counter()
        read(images)
        computing += time.perf_counter() - start
        plan = batches({name: tuple(photo.shape) for name, photo in photos.items()}, per_batch)
    for names in plan:
        start = time.perf_counter()
        if per_batch == 1 and not read(names):
            computing += time.perf_counter() - start
            continue
        try:
            with ExitStack() as logs:
                for name in names:  # appended to: each log already holds its photo's line
                    logs.enter_context(image_log(folder / f"{name}.log", mode="a"))
                seed_everything(seed)
                results = deep_dream_batch(model, [photos[n] for n in names], seed=seed, device=device,
                                           **_dream_kwargs(settings))
                seconds = time.perf_counter() - start
                for name, result in zip(names, results):
                    rows.append(_write_result(Path(images[name]), name, photos[name], result, seconds,
                                              folder / f"{name}.png", folder / f"{name}.csv", model, settings))
                    log.info("%s: done; it shared its job's start-up with %d other image(s)", name,
                             len(images) - 1)
        except Exception as error:
            failed(names, error)
            continue
        finally:
            computing += time.perf_counter() - start
            for name in names:
                photos.pop(name, None)
        for name in names:
            write_caption(folder / f"{name}.rst", dream_key_numbers(folder / f"{name}.csv"))
    log.info("chunk: %d image(s) in %.2f s of DeepDream (reading and writing included), %.2f s per image",
             len(images), computing, computing / max(1, len(images)))
    return rows
