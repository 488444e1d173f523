"""Measurements that tests make on their own, independent of cnnpipe's code."""

from __future__ import annotations

import skimage.data
import torch
import torch.nn.functional as F


def forward_outputs(model, layers, image: torch.Tensor) -> dict:
    """Name -> output of each of ``layers`` for one image [C, H, W], by forward hooks of the
    test's own on one plain pass."""
    outputs = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda module, inputs, out, name=name: outputs.__setitem__(name, out)) for name in layers]
    try:
        with torch.no_grad():
            model(image[None])
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def imagenet_photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image photo as ImageNet evaluation crops it: a 1x3xSxS tensor in [0, 1], the
    shorter side scaled to size/0.875, then the centre crop."""
    image = torch.from_numpy(getattr(skimage.data, name)()).permute(2, 0, 1).float().div(255)[None]
    height, width = image.shape[-2:]
    scale = round(size / 0.875) / min(height, width)
    image = F.interpolate(image, size=(round(height * scale), round(width * scale)),
                          mode="bilinear", antialias=True, align_corners=False)
    top, left = (image.shape[-2] - size) // 2, (image.shape[-1] - size) // 2
    return image[..., top:top + size, left:left + size].clamp(0, 1)


def visible_files(folder) -> list[str]:
    """The names of the files in ``folder``, sorted, without hidden ones (Snakemake marks a
    directory output with a ``.snakemake_timestamp`` file)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
