"""Receptive fields: the input pixels a position of a layer's feature map can see.

Composed along the layer stack in the order the forward pass runs it: every ``Conv2d``,
``MaxPool2d`` and ``AvgPool2d`` whose input has the size of the current feature map grows the
field by ``(kernel - 1) * jump`` (kernel dilated), multiplies the jump by its stride and moves
the first field's left edge by ``-padding * jump``. A module whose input has another size is on
a side branch (ResNet's downsampling shortcut reads the block's input after the main path has
already been counted) and is skipped; residual additions and elementwise layers change nothing.
Global context (squeeze-and-excitation, attention) is not a box and is left out: the box is
what the convolutions and poolings alone reach. Computed on a zero image of the network's input
size (one forward that stops at the layer); exact for a chain of convolutions and poolings, as
the hand-computed test network checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ReceptiveField:
    """Per axis (rows, columns): field ``size``, ``jump`` between neighbouring positions and the
    ``start`` (left/top edge, may be negative: padding) of position 0's field, in input pixels."""

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]

    def box(self, row: int, col: int, height: int, width: int) -> tuple[int, int, int, int]:
        """The field of position (row, col) clipped to a ``height`` x ``width`` image:
        ``(top, left, bottom, right)`` with bottom and right exclusive."""
        top = self.start[0] + row * self.jump[0]
        left = self.start[1] + col * self.jump[1]
        return (max(0, top), max(0, left), min(height, top + self.size[0]), min(width, left + self.size[1]))


class _Stop(Exception):
    pass


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _geometry(module: nn.Module) -> tuple[tuple[int, int], ...] | None:
    """(kernel, stride, padding, dilation) of a convolution or pooling, else None."""
    if isinstance(module, nn.Conv2d):
        padding = module.padding if not isinstance(module.padding, str) else tuple(
            (d * (k - 1)) // 2 if module.padding == "same" else 0
            for k, d in zip(module.kernel_size, module.dilation))
        return _pair(module.kernel_size), _pair(module.stride), _pair(padding), _pair(module.dilation)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        dilation = getattr(module, "dilation", 1)
        return _pair(module.kernel_size), _pair(module.stride or module.kernel_size), _pair(module.padding), \
            _pair(dilation)
    return None


def receptive_field(model: nn.Module, layer: str, input_shape: Sequence[int]) -> ReceptiveField:
    """The receptive field of ``layer`` (a module name of ``model``) for inputs [C, H, W]."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ValueError(f"receptive_field: layer {layer!r} not found")
    size, jump, start = [1, 1], [1, 1], [0, 0]
    current = [int(input_shape[1]), int(input_shape[2])]

    def grow(module, inputs, output):
        geometry = _geometry(module)
        x = inputs[0] if inputs else None
        if geometry is None or not torch.is_tensor(x) or x.dim() != 4 or list(x.shape[-2:]) != current:
            return
        kernel, stride, padding, dilation = geometry
        for axis in range(2):
            effective = dilation[axis] * (kernel[axis] - 1) + 1
            size[axis] += (effective - 1) * jump[axis]
            start[axis] -= padding[axis] * jump[axis]
            jump[axis] *= stride[axis]
        current[:] = list(output.shape[-2:])

    def stop(module, inputs, output):
        raise _Stop

    handles = [m.register_forward_hook(grow) for m in modules.values() if _geometry(m) is not None]
    handles.append(modules[layer].register_forward_hook(stop))
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            model(torch.zeros(1, *map(int, input_shape), device=device))
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return ReceptiveField(tuple(size), tuple(jump), tuple(start))
