"""Measurements that tests make on their own, independent of cnnpipe's code."""

from __future__ import annotations

import torch


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
