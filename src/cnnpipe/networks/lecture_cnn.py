"""The lecture's CNN, built from config, and helpers to reach its layers by name.

The network is a flat ``nn.Sequential`` whose children carry the lecture's names::

    normalize, conv1, relu1, pool1, conv2, relu2, pool2, ..., flatten, fc1, fc_relu1,
    dropout1, ..., logits

so any layer is addressed by a plain name (``conv2``), and a forward pass can stop at
the deepest layer needed. The model takes images in [0, 1]; input normalization is its
first layer, so every visualization works in plain pixel space."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel, with mean and std stored as buffers (saved in checkpoints)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LectureCNN(nn.Sequential):
    """convolution -> max pooling, repeated -> flatten -> fully connected -> classes."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int,
        conv_channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.0,
        batch_norm: bool = False,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"model.kernel_size must be odd (got {kernel_size})")
        if image_size // 2 ** len(conv_channels) < 1:
            raise ValueError(
                f"model.conv_channels: {len(conv_channels)} pooling stages shrink a "
                f"{image_size}px image below one pixel"
            )
        mean = list(mean) if mean is not None else [0.0] * in_channels
        std = list(std) if std is not None else [1.0] * in_channels
        layers: OrderedDict[str, nn.Module] = OrderedDict(normalize=Normalize(mean, std))
        channels, size = in_channels, image_size
        for i, out in enumerate(conv_channels, start=1):
            layers[f"conv{i}"] = nn.Conv2d(channels, out, kernel_size, padding=kernel_size // 2)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm2d(out)
            layers[f"relu{i}"] = nn.ReLU()
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            channels, size = out, size // 2
        layers["flatten"] = nn.Flatten()
        features = channels * size * size
        for j, width in enumerate(hidden, start=1):
            layers[f"fc{j}"] = nn.Linear(features, width)
            layers[f"fc_relu{j}"] = nn.ReLU()
            if dropout > 0:
                layers[f"dropout{j}"] = nn.Dropout(dropout)
            features = width
        layers["logits"] = nn.Linear(features, num_classes)
        super().__init__(layers)

    def conv_layer_names(self) -> list[str]:
        return [name for name, module in self.named_children() if isinstance(module, nn.Conv2d)]


def model_kwargs(model_cfg: dict) -> dict:
    """The constructor arguments that come from the ``model`` config section."""
    return {
        "conv_channels": list(model_cfg.get("conv_channels", (16, 32))),
        "kernel_size": int(model_cfg.get("kernel_size", 3)),
        "hidden": list(model_cfg.get("hidden", (64,))),
        "dropout": float(model_cfg.get("dropout", 0.0)),
        "batch_norm": bool(model_cfg.get("batch_norm", False)),
    }


def build_model(model_cfg: dict, manifest: dict) -> LectureCNN:
    """Build the CNN for a prepared dataset, described by its manifest."""
    channels, height, width = manifest["image_shape"]
    if height != width:
        raise ValueError(f"dataset images must be square for this CNN (got {height}x{width})")
    norm = manifest["normalization"]
    return LectureCNN(
        in_channels=channels,
        num_classes=len(manifest["classes"]),
        image_size=height,
        mean=norm["mean"],
        std=norm["std"],
        **model_kwargs(model_cfg),
    )
