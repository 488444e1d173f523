"""Layers and hooks: find a module by qualified name and capture what it outputs.

``get_layer`` resolves names such as ``conv2`` or ``blocks.2.0``; ``capture`` hooks the layers
an objective needs and stops the forward pass as soon as all of them have produced output,
so deeper layers never run. ``frozen`` puts a model in eval mode without parameter grads.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from torch import Tensor, nn

__all__ = ["LayerNotFoundError", "layer_names", "get_layer", "Activations", "capture", "frozen"]


class LayerNotFoundError(LookupError):
    """A layer name that the model does not have."""


def layer_names(model: nn.Module) -> list[str]:
    """All qualified module names of ``model`` (without the root's empty name)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (``"conv2"``, ``"blocks.2.0"``; ``""`` is the model)."""
    if not isinstance(name, str):
        raise TypeError(f"layer name must be a string, got {type(name).__name__}")
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = layer_names(model)
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        message = f"layer {name!r} not found in {type(model).__name__}"
        if close:
            message += f"; did you mean {', '.join(map(repr, close))}?"
        shown = ", ".join(names[:40]) + (f", ... ({len(names) - 40} more)" if len(names) > 40 else "")
        raise LayerNotFoundError(f"{message} Available layers: {shown}") from None


class _StopForward(Exception):
    """Raised by a hook once every requested layer has produced output."""


class Activations(dict):
    """Captured outputs by layer name; ``run(x)`` fills it from one (early-stopped) forward pass."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.model = model
        self.names = tuple(names)
        self._stopping = False

    def run(self, x: Tensor, stop_early: bool = True) -> Activations:
        """Forward ``x``; with ``stop_early`` the pass ends right after the last needed layer."""
        self.clear()
        if not self.names:
            return self
        self._stopping = stop_early
        try:
            self.model(x)
        except _StopForward:
            pass
        finally:
            self._stopping = False
        missing = [name for name in self.names if name not in self]
        if missing:
            raise RuntimeError(f"layers {missing} produced no output in the forward pass")
        return self

    def _store(self, name: str, output) -> None:
        self[name] = output
        if self._stopping and len(self) == len(self.names):
            raise _StopForward


@contextmanager
def capture(model: nn.Module, layer_names: Sequence[str]) -> Iterator[Activations]:
    """Hook ``layer_names`` for the duration of the block; hooks are removed on any exit.

    A module called twice in one pass keeps its first output when stopping early.
    """
    names = list(dict.fromkeys(layer_names))
    modules = [get_layer(model, name) for name in names]
    acts = Activations(model, names)
    handles = []
    try:
        for name, module in zip(names, modules):
            handles.append(module.register_forward_hook(_make_hook(acts, name)))
        yield acts
    finally:
        for handle in handles:
            handle.remove()


def _make_hook(acts: Activations, name: str):
    def hook(module, inputs, output):
        acts._store(name, output)

    return hook


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no parameter grads inside the block; each module's mode and each
    parameter's ``requires_grad`` are restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode
