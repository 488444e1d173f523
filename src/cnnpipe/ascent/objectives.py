"""Objectives: what an ascent maximizes.

An ``Objective`` maps the captured activations (layer name -> tensor with batch dim B) to a
score per sample, shape [B], to *maximize*. Objectives add, subtract and scale
(``channel("conv2", 3) - 0.1 * layer_energy("conv1")``) and know which layers they need.
Sample b may have its own objective: ``per_sample([...])`` fuses a list of them into one
batched objective (``channel`` with a list of indices is a single gather).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "Objective",
    "channel",
    "channels",
    "neuron",
    "class_logit",
    "class_log_odds",
    "class_log_softmax",
    "class_probability",
    "layer_energy",
    "per_sample",
    "as_objective",
]


class Objective:
    """Activations (name -> [B, ...]) -> score per sample [B] to maximize.

    ``fn`` computes the score, ``layers`` names what it reads, ``batch`` is the batch size it
    was built for (per-sample objectives) or None (any batch). Objectives support ``+``,
    ``-``, unary ``-``, and ``*``/``/`` by numbers; ``sum(list_of_objectives)`` works.
    """

    def __init__(
        self,
        fn: Callable[[Mapping[str, Tensor]], Tensor],
        layers=(),
        name: str = "objective",
        *,
        batch: int | None = None,
        _fuse=None,
    ):
        self.fn = fn
        self.layers = frozenset(layers)
        self.name = name
        self.batch = batch
        # (key, argument, builder): objectives with equal keys fuse into builder([arguments]).
        self._fuse = _fuse

    def __call__(self, acts: Mapping[str, Tensor]) -> Tensor:
        return self.fn(acts)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda a: self(a) + other, self.layers, f"{self.name} + {other}", batch=self.batch)
        if not isinstance(other, Objective):
            return NotImplemented
        name = f"{self.name} + {other.name}"
        return Objective(
            lambda a: self(a) + other(a), self.layers | other.layers, name, batch=_joint_batch(self, other)
        )

    def __radd__(self, other):
        return self.__add__(other)

    def __neg__(self):
        return Objective(lambda a: -self(a), self.layers, f"-({self.name})", batch=self.batch)

    def __sub__(self, other):
        if isinstance(other, (int, float)):
            return self + (-other)
        if not isinstance(other, Objective):
            return NotImplemented
        name = f"{self.name} - ({other.name})"
        return Objective(
            lambda a: self(a) - other(a), self.layers | other.layers, name, batch=_joint_batch(self, other)
        )

    def __rsub__(self, other):
        return (-self).__add__(other)

    def __mul__(self, factor):
        if isinstance(factor, bool) or not isinstance(factor, (int, float)):
            return NotImplemented
        return Objective(lambda a: factor * self(a), self.layers, f"{factor} * ({self.name})", batch=self.batch)

    __rmul__ = __mul__

    def __truediv__(self, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)):
            return NotImplemented
        return self * (1.0 / divisor)


def _joint_batch(first: Objective, second: Objective) -> int | None:
    if first.batch is not None and second.batch is not None and first.batch != second.batch:
        raise ValueError(f"cannot combine objectives for batches of {first.batch} and {second.batch}")
    return first.batch if first.batch is not None else second.batch


def _act(acts: Mapping[str, Tensor], layer: str) -> Tensor:
    a = acts[layer]
    if not torch.is_tensor(a):
        raise TypeError(f"layer {layer!r} returned {type(a).__name__}, not a tensor")
    if a.dim() < 2:
        raise ValueError(f"layer {layer!r} output has shape {tuple(a.shape)}; expected [B, C, ...]")
    return a


class _Index:
    """One unit for every sample (int), or one unit per sample (LongTensor [B])."""

    def __init__(self, k):
        if torch.is_tensor(k) and k.dim() == 0:
            k = int(k)
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            self.single, self.values = int(k), None
        else:
            values = torch.as_tensor(k, dtype=torch.long).reshape(-1)
            self.single, self.values = None, values
            self.lo = int(values.min()) if len(values) else 0
            self.hi = int(values.max()) if len(values) else 0

    @property
    def batch(self) -> int | None:
        return None if self.values is None else len(self.values)

    def pick(self, a: Tensor, layer: str) -> Tensor:
        """a [B, C, ...] -> a[b, k_b, ...] of shape [B, ...]."""
        units = a.shape[1]
        if self.values is None:
            if not -units <= self.single < units:
                raise IndexError(f"unit {self.single} out of range for layer {layer!r} with {units} units")
            return a[:, self.single]
        batch = a.shape[0]
        if len(self.values) != batch:
            raise ValueError(f"{len(self.values)} per-sample units for layer {layer!r} but a batch of {batch}")
        if self.lo < -units or self.hi >= units:
            raise IndexError(f"units {self.lo}..{self.hi} out of range for layer {layer!r} with {units} units")
        # One advanced-indexing gather for the whole batch.
        return a[torch.arange(batch, device=a.device), self.values.to(a.device)]

    def mask(self, a: Tensor) -> Tensor:
        """Boolean [B, C]: True at each sample's unit (range checked by ``pick``)."""
        mask = torch.zeros(a.shape[0], a.shape[1], dtype=torch.bool, device=a.device)
        if self.values is None:
            mask[:, self.single] = True
        else:
            mask[torch.arange(a.shape[0], device=a.device), self.values.to(a.device)] = True
        return mask

    def __repr__(self) -> str:
        return str(self.single) if self.values is None else f"[{len(self.values)} units]"


def _sum_or_mean(x: Tensor, reduce: str) -> Tensor:
    flat = x.reshape(x.shape[0], -1)
    if reduce == "sum":
        return flat.sum(1)
    if reduce == "mean":
        return flat.mean(1)
    raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")


def channel(layer: str, k, *, reduce: str = "sum") -> Objective:
    """Degree of activation a^k = sum_ij a^k_ij of channel ``k`` (``reduce="mean"``: mean).

    On a 2-D [B, features] output it is unit ``k``. ``k`` may be a list, one unit per sample.
    """
    index = _Index(k)

    def fn(acts):
        return _sum_or_mean(index.pick(_act(acts, layer), layer), reduce)

    fuse = None
    if index.values is None:
        fuse = (("channel", layer, reduce), index.single, lambda ks: channel(layer, ks, reduce=reduce))
    return Objective(fn, {layer}, f"channel({layer!r}, {index!r})", batch=index.batch, _fuse=fuse)


def channels(layer: str, ks: Sequence[int], *, reduce: str = "sum") -> Objective:
    """Sample b maximizes channel ``ks[b]`` of ``layer``: one gather for the whole batch."""
    if isinstance(ks, (int, np.integer)):
        raise TypeError("channels() takes one unit per sample; use channel() for a single unit")
    return channel(layer, ks, reduce=reduce)


def neuron(layer: str, k, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of channel ``k`` at one position (default: the centre) of a [B, C, H, W] layer."""
    index = _Index(k)

    def fn(acts):
        a = index.pick(_act(acts, layer), layer)
        if a.dim() != 3:
            raise ValueError(f"neuron() needs a [B, C, H, W] layer; {layer!r} gives {a.dim() + 1} dims")
        row = a.shape[1] // 2 if y is None else y
        col = a.shape[2] // 2 if x is None else x
        return a[:, row, col]

    fuse = None
    if index.values is None:
        fuse = (("neuron", layer, y, x), index.single, lambda ks: neuron(layer, ks, y, x))
    return Objective(fn, {layer}, f"neuron({layer!r}, {index!r}, {y}, {x})", batch=index.batch, _fuse=fuse)


def class_logit(layer: str, i) -> Objective:
    """Logit y^i of the output unit ``i`` (the lecture's "can we see digits?")."""
    obj = channel(layer, i)
    obj.name = f"class_logit({layer!r}, {_Index(i)!r})"
    return obj


def _class_scores(layer: str, i, kind: str) -> Objective:
    index = _Index(i)

    def fn(acts):
        a = _act(acts, layer)
        if a[0].numel() != a.shape[1]:
            raise ValueError(f"{kind} needs a [B, classes] layer; {layer!r} gives {tuple(a.shape)}")
        a = a.reshape(a.shape[0], a.shape[1])
        if kind == "log_odds":
            # y_i - logsumexp of the other logits, without forming 1 - p (which rounds to 0)
            return index.pick(a, layer) - a.masked_fill(index.mask(a), float("-inf")).logsumexp(dim=1)
        scores = torch.log_softmax(a, dim=1) if kind == "log_softmax" else torch.softmax(a, dim=1)
        return index.pick(scores, layer)

    fuse = None
    if index.values is None:
        fuse = ((kind, layer), index.single, lambda ks: _class_scores(layer, ks, kind))
    return Objective(fn, {layer}, f"class_{kind}({layer!r}, {index!r})", batch=index.batch, _fuse=fuse)


def class_log_softmax(layer: str, i) -> Objective:
    """log p(i | x) from the logits at ``layer``: pushes class i up and the others down
    (the useful gradient for fooling images; the probability saturates near 1)."""
    return _class_scores(layer, i, "log_softmax")


def class_log_odds(layer: str, i) -> Objective:
    """log(p / (1 - p)) of class i's softmax probability p, from the logits at ``layer``. It
    rises with p (so its maximizer is p's), but does not flatten out as p nears 1, as p and
    log p do: the ascent keeps pushing class i's logit above all the others."""
    return _class_scores(layer, i, "log_odds")


def class_probability(layer: str, i) -> Objective:
    """Softmax probability of class ``i`` from the logits at ``layer``."""
    return _class_scores(layer, i, "probability")


def layer_energy(layer: str, *, reduce: str = "mean") -> Objective:
    """||a||^2 of the whole layer per sample, mean (default) or sum over its elements (DeepDream)."""

    def fn(acts):
        return _sum_or_mean(_act(acts, layer).pow(2), reduce)

    fuse = (("energy", layer, reduce), None, lambda _: layer_energy(layer, reduce=reduce))
    return Objective(fn, {layer}, f"layer_energy({layer!r}, {reduce})", _fuse=fuse)


def per_sample(objectives: Sequence[Objective]) -> Objective:
    """Sample b maximizes ``objectives[b]``.

    Objectives of one family (``channel`` of one layer, ``class_log_softmax`` of one layer, ...)
    are fused into one vectorized objective; others are evaluated on their own samples.
    """
    objs = list(objectives)
    if not objs:
        raise ValueError("per_sample() needs at least one objective")
    for obj in objs:
        if not isinstance(obj, Objective):
            raise TypeError(f"per_sample() takes Objectives, got {type(obj).__name__}")
        if obj.batch not in (None, 1):
            raise ValueError(f"per_sample() takes one objective per sample; {obj.name} is for {obj.batch} samples")
    batch = len(objs)
    groups: dict = {}
    for b, obj in enumerate(objs):
        key = obj._fuse[0] if obj._fuse is not None else ("object", id(obj))
        groups.setdefault(key, []).append(b)
    parts = []
    for members in groups.values():
        first = objs[members[0]]
        part = first._fuse[2]([objs[m]._fuse[1] for m in members]) if first._fuse is not None else first
        parts.append((torch.tensor(members, dtype=torch.long), part))
    layers = frozenset().union(*(obj.layers for obj in objs))
    name = f"per_sample({batch} objectives in {len(parts)} groups)"

    if len(parts) == 1:
        only = parts[0][1]

        def single(acts):
            score = only(acts)
            if score.shape != (batch,):
                raise ValueError(f"{name}: got a score of shape {tuple(score.shape)} for {batch} samples")
            return score

        return Objective(single, layers, name, batch=batch)

    def fn(acts):
        out = None
        for members, part in parts:
            sub = {}
            for layer in part.layers:
                a = acts[layer]
                if a.shape[0] != batch:
                    raise ValueError(f"{name}: layer {layer!r} has a batch of {a.shape[0]}")
                sub[layer] = a.index_select(0, members.to(a.device))
            value = part(sub)
            if out is None:
                out = value.new_zeros(batch)
            out = out.index_copy(0, members.to(value.device), value)
        return out

    return Objective(fn, layers, name, batch=batch)


def as_objective(objective) -> tuple[Objective, int | None]:
    """``(objective, its batch)`` for an Objective; ``(per_sample(list), len(list))`` for a list."""
    if isinstance(objective, Objective):
        return objective, objective.batch
    objs = list(objective)
    return per_sample(objs), len(objs)
