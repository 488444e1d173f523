"""The resources a job declares: its memory (measured by the benchmarks named below) and its GPU."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cnnpipe.methods.style.settings import check_style_batch

# The memory of one DeepDream job, in MB, from peak RSS measured on EfficientNet-Lite0 on two
# CPU cores (benchmarks/dream_memory.py): the process with torch and the network, the
# activations and gradients of one window (per million window pixels), and the copies of the
# photo (per million photo pixels; more with smaller octaves kept beside it).
DREAM_MEMORY_MB = {"base": 900, "per_window_mp": 1500, "per_photo_mp": 100, "octaves_factor": 1.7, "margin": 1.3}


def dream_mem_mb(image: str | os.PathLike, dream_cfg: Mapping) -> int:
    """The ``mem_mb`` a DeepDream job declares for ``image``: enough for its measured peak,
    with a margin, for the photo's size (read from its header) and ``dream.tile``."""
    from PIL import Image

    try:
        with Image.open(image) as photo:
            width, height = photo.size
    except Exception:  # not an image: the job itself stops with a message naming the file
        width = height = 0
    photo_mp = width * height / 1e6
    tile = int(dream_cfg["tile"])
    window_mp = photo_mp if tile <= 0 else min(photo_mp, tile * tile / 1e6)
    cost = DREAM_MEMORY_MB
    per_photo = cost["per_photo_mp"] * (cost["octaves_factor"] if int(dream_cfg["octaves"]) > 1 else 1.0)
    mb = (cost["base"] + cost["per_window_mp"] * window_mp + per_photo * photo_mp) * cost["margin"]
    return int(-(-mb // 100) * 100)


def style_mem_mb(style_cfg: Mapping) -> int:
    """The ``mem_mb`` a style chunk declares (its pairs, or batches of ``style.batch`` pairs, run
    one after another): a fixed part (Python, torch, the network and the judge), activations and
    gradients growing with the largest size's pixels (square, the worst case) and the batch,
    and L-BFGS's 2 x ``lbfgs_history`` images; measured on EfficientNet-Lite0 by
    benchmarks/style_multiscale.py (2.4 GB peak at 1024 px, history 20). At least 4000, the
    former fixed declaration, for networks not measured. (With batch "auto" the batches run on
    a GPU, so one pair's host memory is counted.)"""
    size = int(style_cfg["image_size"])
    history = int(style_cfg.get("lbfgs_history") or 20)
    batch = check_style_batch(style_cfg)
    mb = 1500 + 1.6e-3 * size * size * (batch if isinstance(batch, int) else 1) + (
        2 * history * 3 * 4 * (size + 16) ** 2 / 2**20)
    return max(4000, int(-(-mb // 100) * 100))


def local_gpu_count(environ: Mapping[str, str] | None = None, driver: str | os.PathLike = "/proc/driver/nvidia/gpus"
                    ) -> int:
    """NVIDIA GPUs this machine shows to its jobs, found without importing torch:
    CUDA_VISIBLE_DEVICES where it is set ("" or "-1": none), else the driver's GPU list."""
    environ = os.environ if environ is None else environ
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
        return 0 if not entries or entries[0] == "-1" else len(entries)
    driver = Path(driver)
    return sum(1 for _ in driver.iterdir()) if driver.is_dir() else 0


def gpus_per_job(device: str, *, local: bool, local_gpus: int) -> int:
    """The ``gpu`` resource a GPU-capable job declares: none with ``device: cpu``; one with cuda
    or mps; with auto, one on a cluster (its nodes may have GPUs that this host lacks) and
    locally only where this machine has a GPU, so that a CPU-only workstation, whose global
    ``gpu`` limit (profiles/default) is 1, still runs such jobs side by side."""
    if device == "cpu":
        return 0
    if device == "auto" and local:
        return 1 if local_gpus > 0 else 0
    return 1


# An atlas job's memory, in MB, from peak RSS measured on two CPU cores, one thread
# (benchmarks/atlas_memory.py, benchmarks/results/atlas_memory.csv): the process with torch
# and its network (the lecture CNN, or an ImageNet network: 690 and 790 MB measured with
# EfficientNet-Lite0 in one environment; a fresh clone's venv measured up to 300 MB more, so
# the bases are 950 and 1000), plus the ascent's samples (activations, gradients, transform copies):
# about 1,100 MB per sample-megapixel on Lite0 (17 MB per 128 px sample); for the lecture CNN,
# whose maps are 16 and 32 channels, an estimate of 500 (at 8 px it did not show). A chunk's
# largest batch is its units times the diverse members ascended together (k - 1), capped by
# atlas.memory_mb (estimate_max_batch sizes the batches to it); an ImageNet judge adds a
# second network. A dataset pass holds the images as float and one float per image and unit.
ATLAS_MEMORY_MB = {"base_trained": 950, "base_backbone": 1000, "per_sample_mp_trained": 500,
                   "per_sample_mp_backbone": 1100, "judge": 200, "margin": 1.3}


def atlas_chunk_mem_mb(atlas_cfg: Mapping, *, trained: bool, units: int, side: int, judge: bool = False) -> int:
    """The ``mem_mb`` an atlas chunk of ``units`` units declares, for images of ``side`` px:
    the base for its network, the ascent's largest batch (units x members ascended together,
    at most ``atlas.memory_mb``) and the judge, with a margin."""
    cost = ATLAS_MEMORY_MB
    base = cost["base_trained"] if trained else cost["base_backbone"]
    per_sample = (cost["per_sample_mp_trained"] if trained else cost["per_sample_mp_backbone"]) * side * side / 1e6
    batch = max(1, int(units)) * max(1, int(atlas_cfg["diverse"]) - 1)
    samples_mb = min(float(atlas_cfg["memory_mb"]), per_sample * batch)
    mb = (base + samples_mb + (cost["judge"] if judge else 0)) * cost["margin"]
    return int(-(-mb // 100) * 100)


def atlas_dataset_mem_mb(images: int, units: int, atlas_cfg: Mapping) -> int:
    """The ``mem_mb`` an atlas dataset pass declares for ``images`` files (0: the bundled
    photos or the training set, counted as 2,000) and a layer of ``units`` units."""
    count = images or 2000
    side = int(atlas_cfg["image_size"] or 224)
    pixels_mb = count * 3 * side * side * 4 / 2**20
    per_unit_mb = count * units * 16 / 2**20
    cost = ATLAS_MEMORY_MB
    mb = (cost["base_backbone"] + pixels_mb + per_unit_mb) * cost["margin"]
    return int(-(-mb // 100) * 100)
