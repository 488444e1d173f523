"""DeepDream, the stage: dream each photo file of a chunk.

The algorithm is :mod:`cnnpipe.methods.deepdream`; this module reads a photo, runs it and writes
what the rules promise: the dreamed PNG (the photo's size) and a one-row CSV per photo. The
table and figure of them all are :mod:`cnnpipe.stages.dream_summary` (no torch)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnpipe.io.files import atomic_write_text, write_rows
from cnnpipe.io.images import load_image, pil_to_tensor, save_png
from cnnpipe.methods.deepdream import DreamResult, deep_dream_batch
from cnnpipe.networks.build import load_backbone
from cnnpipe.report.captions import dream_key_numbers, write_caption
from cnnpipe.runtime.chunks import ERROR_SUFFIX, batches
from cnnpipe.runtime.device import seed_everything, select_device
from cnnpipe.runtime.logs import image_log

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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model, device, per_batch = _start_up(settings, len(images), seed=seed, device_name=device_name,
                                         cache_dir=cache_dir, checkpoint=checkpoint)
    chunk = _DreamChunk(images, folder, settings, model, device, seed)
    if per_batch == 1:  # each photo read just before it is dreamed: one photo in memory at a time
        plan = [[name] for name in images]
    else:  # all read first, to batch photos of one size (the chunk's photos in memory at once)
        start = time.perf_counter()
        chunk.read(images)
        chunk.computing += time.perf_counter() - start
        plan = batches({name: tuple(photo.shape) for name, photo in chunk.photos.items()}, per_batch)
    for names in plan:
        chunk.run(names, read=per_batch == 1)
    log.info("chunk: %d image(s) in %.2f s of DeepDream (reading and writing included), %.2f s per image",
             len(images), chunk.computing, chunk.computing / max(1, len(images)))
    return chunk.rows


def _start_up(settings: Mapping, count: int, *, seed: int, device_name: str, cache_dir,
              checkpoint) -> tuple[nn.Module, torch.device, int]:
    """Seed, load the chunk's network once, pick the device and the images per batch; log how
    long that took. (network, device, images per batch)"""
    began = time.perf_counter()
    seed_everything(seed)
    model = load_backbone(settings["backbone"], cache_dir=cache_dir, checkpoint=checkpoint, key="dream.backbone")
    device = select_device(device_name)
    per_batch = batch_size(settings.get("batch", 1), device)
    loaded = time.perf_counter() - began
    log.info("start-up: network %s loaded in %.2f s, shared by the chunk's %d image(s); %d image(s) per batch",
             getattr(model, "backbone_name", type(model).__name__), loaded, count, per_batch)
    return model, device, per_batch


class _DreamChunk:
    """A chunk job's photos (name -> file) and what they share: the folder, the settings, the
    network and the seed; the photos read and not dreamed yet, the rows written, and the
    seconds spent reading, dreaming and writing."""

    def __init__(self, images: Mapping[str, str | os.PathLike], folder: Path, settings: Mapping, model: nn.Module,
                 device: torch.device, seed: int):
        self.images, self.folder, self.settings = images, folder, settings
        self.model, self.device, self.seed = model, device, seed
        self.photos: dict[str, Tensor] = {}
        self.rows: list[dict] = []
        self.computing = 0.0

    def failed(self, names, error) -> None:
        """Log the failure and give each of ``names`` an error file: one bad image must not
        cost its chunk-mates their results. Call it while handling ``error``."""
        log.exception("%s: failed; the other images of this chunk go on", ", ".join(names))
        for name in names:
            atomic_write_text(self.folder / f"{name}{ERROR_SUFFIX}", f"{error}\n")

    def read(self, names) -> bool:
        """Read ``names``' photos, each logging to its own log; whether all of them could be read."""
        for name in names:
            try:
                with image_log(self.folder / f"{name}.log"):
                    self.photos[name] = _read_photo(Path(self.images[name]))
            except Exception as error:
                self.failed([name], error)
        return all(name in self.photos for name in names)

    def run(self, names: list[str], *, read: bool) -> None:
        """Dream ``names`` as one batch (``read``: read their photos first) and write their
        files and captions; a failure fails this batch alone."""
        start = time.perf_counter()
        if read and not self.read(names):
            self.computing += time.perf_counter() - start
            return
        try:
            self._dream(names, start)
        except Exception as error:
            self.failed(names, error)
            return
        finally:
            self.computing += time.perf_counter() - start
            for name in names:
                self.photos.pop(name, None)
        for name in names:
            write_caption(self.folder / f"{name}.rst", dream_key_numbers(self.folder / f"{name}.csv"))

    def _dream(self, names: list[str], start: float) -> None:
        """Reseed, dream the batch's photos and write each one's PNG and CSV (a row each), the
        batch's lines going to each of its images' logs."""
        with ExitStack() as logs:
            for name in names:  # appended to: each log already holds its photo's line
                logs.enter_context(image_log(self.folder / f"{name}.log", mode="a"))
            seed_everything(self.seed)
            results = deep_dream_batch(self.model, [self.photos[n] for n in names], seed=self.seed,
                                       device=self.device, **_dream_kwargs(self.settings))
            seconds = time.perf_counter() - start
            for name, result in zip(names, results):
                self.rows.append(_write_result(Path(self.images[name]), name, self.photos[name], result, seconds,
                                               self.folder / f"{name}.png", self.folder / f"{name}.csv", self.model,
                                               self.settings))
                log.info("%s: done; it shared its job's start-up with %d other image(s)", name,
                         len(self.images) - 1)
