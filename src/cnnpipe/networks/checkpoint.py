"""Training checkpoints: one file holds everything needed to use or resume a model.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads
with ``torch.load(path, weights_only=True)``: it never runs pickled code."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnpipe.io.files import torch_save
from cnnpipe.networks.lecture_cnn import LectureCNN, build_model

FORMAT = "cnnpipe-checkpoint/1"
REQUIRED_KEYS = (
    "format",
    "model_state",
    "model_config",
    "classes",
    "image_shape",
    "normalization",
    "epoch",
    "optimizer_state",
    "scheduler_state",
    "rng_state",
    "metrics",
    "fingerprint",
)


def capture_rng_state(generator: torch.Generator, device: torch.device | str | None = None) -> dict[str, Any]:
    """Every random stream training draws from, in a weights_only-safe form: on a GPU, the
    stream of the device in use only (a job resumed with fewer visible GPUs must still load it)."""
    device = torch.device("cpu" if device is None else device)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else [],
        "mps": torch.mps.get_rng_state() if device.type == "mps" else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": list(random.getstate()[1]),
        "python_version": random.getstate()[0],
        "python_gauss": random.getstate()[2],
        "generator": generator.get_state(),
    }


def _device_stream(saved, device: torch.device) -> torch.Tensor | None:
    """The saved CUDA stream for ``device``: a single state, or (checkpoints that saved every
    visible GPU's) the entry of the device's index where there is one, else the first."""
    if isinstance(saved, torch.Tensor):
        return saved
    if not saved:
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    return saved[index] if index < len(saved) else saved[0]


def restore_rng_state(state: dict[str, Any], generator: torch.Generator,
                      device: torch.device | str | None = None) -> None:
    device = torch.device("cpu" if device is None else device)
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and (stream := _device_stream(state.get("cuda"), device)) is not None:
        torch.cuda.set_rng_state(stream, device)
    mps = state.get("mps")
    if device.type == "mps" and isinstance(mps, torch.Tensor):
        torch.mps.set_rng_state(mps)  # else dropout masks would repeat after a resume
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    generator.set_state(state["generator"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically; ``state`` must hold every key in REQUIRED_KEYS."""
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise ValueError(f"checkpoint for {path} lacks {missing}")
    return torch_save(state, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (weights_only) and check that it is one of ours."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file: say which one
        raise ValueError(f"checkpoint {path} cannot be read: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a cnnpipe checkpoint (format {FORMAT})")
    return state


def model_from_state(state: dict[str, Any]) -> LectureCNN:
    manifest = {
        "image_shape": state["image_shape"],
        "classes": state["classes"],
        "normalization": state["normalization"],
    }
    model = build_model(state["model_config"], manifest)
    model.load_state_dict(state["model_state"])
    return model.eval()


# What a stage that reads the trained model says when the file is damaged: the training rule
# rebuilds it, resuming from its last per-epoch checkpoint.
REBUILD_HINT = ("rebuild it with `snakemake --cores 4 -R train` (training resumes from "
                "results/train/checkpoints/last.pt where that matches the config)")


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LectureCNN:
    """The trained CNN from a checkpoint, in eval mode, with its class names as ``.classes``
    and its input shape [C, H, W] as ``.image_shape``.
    A file that cannot be read is a ValueError that says how to rebuild it."""
    try:
        state = load_checkpoint(path, map_location)
    except ValueError as error:
        raise ValueError(f"{error}; {REBUILD_HINT}") from error
    model = model_from_state(state)
    model.classes = list(state["classes"])
    model.image_shape = tuple(int(s) for s in state["image_shape"])
    return model
