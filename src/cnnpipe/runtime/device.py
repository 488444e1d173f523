"""Device choice and seeding: the only place that knows about cuda/mps/cpu."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(name: str = "auto") -> torch.device:
    """``auto`` tries cuda, then mps, then cpu; an explicit choice that is absent is an error."""
    if name not in DEVICE_CHOICES:
        raise ValueError(f"device: {name!r} is not one of {list(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' was asked for but torch sees no CUDA device")
    if name == "mps" and not _mps_available():
        raise RuntimeError("device: 'mps' was asked for but torch sees no MPS device")
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's parameters (or, for a parameterless model, its buffers) live; cpu when
    it has neither."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, ask for deterministic kernels, and return a
    fresh CPU generator seeded with ``seed`` for code that wants its own stream."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # cuBLAS is bitwise reproducible only with a fixed workspace per stream; it reads this when
    # a process first uses it (an explicit setting by the user wins).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    # Full float32 on GPUs too: TF32 (the default for convolutions on Ampere and newer) keeps
    # about 3 decimal digits, so GPU results would drift from CPU ones and exactness checks
    # (BatchNorm folding) would fail. Mixed precision, where asked for, is bfloat16 instead.
    # (The flags that every torch from 2.4 on reads; mixing them with 2.9's fp32_precision
    # settings makes torch refuse to read either.)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return torch.Generator().manual_seed(seed)


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision (bfloat16) on CUDA only; elsewhere a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")
