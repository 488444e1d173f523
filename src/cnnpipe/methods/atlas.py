"""The atlas's two computations per layer: the dataset pass and the diverse set of x*.

The dataset pass runs every image of a folder through the network once, up to the layer, and
keeps per unit: its degree of activation on every image (``a^k = sum_ij a^k_ij`` for a feature
map, as the filters stage and x* use; the unit's value for a fully connected layer), the
position of the strongest ``a^k_ij`` on each image (for the receptive-field crop), the top-n
and bottom-n images and a histogram. Bottom examples are kept only for layers whose units go
below zero (not after a ReLU, whose lowest images are silent ones, a tie that says nothing).

The diverse set (Lucent's diversity objective, in our words): k images that all excite the
unit, pushed apart by a penalty on the cosine similarity of their Gram matrices at the layer
(``G = A A^T / (H W)`` for the layer's [C, H W] map: which channels fire together, wherever).
Member 0 is the lone x* itself, kept fixed; members 1..k-1 ascend together and each pays
``weight * |a^k(x*)| * mean cosine to the other members`` (x* included), so ``weight`` is
unitless: the share of x*'s activation a member may give up to look different. For a fully
connected layer, which has no map, the cosine is taken between the layer's unit vectors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cnnpipe import ascent
from cnnpipe.methods.filter_search import as_unit_images, image_spec, leaky_relus
from cnnpipe.networks.receptive_field import ReceptiveField
from cnnpipe.runtime.device import model_device

# Sample index of diverse member m of unit k: its own noise, never a lone x*'s (index k).
_MEMBER_STRIDE = 1 << 24


@torch.no_grad()
def activations_and_positions(model: nn.Module, layer: str, images: Tensor, *, batch_size: int = 256
                              ) -> tuple[Tensor, Tensor | None, tuple[int, int] | None]:
    """Per image and unit: ``a^k`` [N, C] (float32), the flat index of the strongest position of
    the unit's map [N, C] (int64; None for a fully connected layer) and the map's (H, W)."""
    device = model_device(model)
    values, positions, shape = [], [], None
    with ascent.frozen(model), ascent.capture(model, [layer]) as acts:
        for start in range(0, len(images), batch_size):
            out = acts.run(as_unit_images(images[start:start + batch_size].to(device)))[layer].float()
            if out.dim() == 4:
                shape = (int(out.shape[2]), int(out.shape[3]))
                values.append(out.sum(dim=(2, 3)).cpu())
                positions.append(out.flatten(2).argmax(dim=2).cpu())
            elif out.dim() == 2:
                values.append(out.cpu())
            else:
                raise ValueError(f"layer {layer!r} gives {tuple(out.shape)}, not a feature map or units")
    if not values:
        raise ValueError(f"atlas: no images for layer {layer!r}")
    return torch.cat(values), (torch.cat(positions) if positions else None), shape


def ranked(values: Tensor, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-n and bottom-n images per unit of ``values`` [N, C]: (top indices [C, n], their values,
    bottom indices [C, n], their values), best first / lowest first. Ties go to the lower image
    index. A layer none of whose units goes below zero on any image (one after a ReLU) gets no
    bottom examples (index -1, value NaN): its lowest images say nothing about what it
    opposes. With fewer than 2n images, the top takes the first half and the bottom the rest,
    so that no image is shown as both."""
    count = values.shape[0]
    signed = bool((values < 0).any())
    top_n = min(int(n), count) if not signed else min(int(n), (count + 1) // 2)
    bottom_n = min(int(n), count - top_n) if signed else top_n
    data = values.double().numpy().T  # [C, N]
    order = np.argsort(-data, axis=1, kind="stable")[:, :top_n]
    top_values = np.take_along_axis(data, order, axis=1)
    if not signed:
        return order, top_values, np.full((data.shape[0], top_n), -1), np.full((data.shape[0], top_n), np.nan)
    low = np.argsort(data, axis=1, kind="stable")[:, :bottom_n]
    return order, top_values, low, np.take_along_axis(data, low, axis=1)


def histograms(values: Tensor, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, a histogram of ``values`` [N, C] over its own range: counts [C, bins], edges [C, bins + 1]."""
    data = values.double().numpy().T
    counts = np.zeros((data.shape[0], bins), dtype=np.int64)
    edges = np.zeros((data.shape[0], bins + 1))
    for unit, row in enumerate(data):
        low, high = float(row.min()), float(row.max())
        counts[unit], edges[unit] = np.histogram(row, bins=bins, range=(low, high if high > low else low + 1))
    return counts, edges


def boxes(indices: np.ndarray, positions: Tensor | None, shape, field: ReceptiveField | None,
          image_size: tuple[int, int]) -> np.ndarray:
    """(top, left, bottom, right) of each example's receptive field around its strongest
    position [C, n, 4]; the whole image for a fully connected layer, -1 where there is no example."""
    out = np.full((*indices.shape, 4), -1, dtype=np.int64)
    height, width = image_size
    for unit, row in enumerate(indices):
        for rank, image in enumerate(row):
            if image < 0:
                continue
            if positions is None or field is None:
                out[unit, rank] = (0, 0, height, width)
                continue
            flat = int(positions[image, unit])
            out[unit, rank] = field.box(flat // shape[1], flat % shape[1], height, width)
    return out


def dataset_pass(model: nn.Module, layer: str, images: Tensor, field: ReceptiveField | None, *, top_n: int,
                 bins: int) -> dict[str, np.ndarray]:
    """Everything the atlas keeps about ``layer``'s units on ``images`` [N, C, H, W], as arrays
    for an ``.npz``: ``top_index``/``top_value``/``top_box``, the same for ``bottom``,
    ``hist_counts``/``hist_edges``, ``maximum``, ``minimum``, ``mean`` and ``map_shape``."""
    values, positions, shape = activations_and_positions(model, layer, images)
    top, top_values, bottom, bottom_values = ranked(values, top_n)
    counts, edges = histograms(values, bins)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    return {
        "top_index": top, "top_value": top_values, "top_box": boxes(top, positions, shape, field, size),
        "bottom_index": bottom, "bottom_value": bottom_values,
        "bottom_box": boxes(bottom, positions, shape, field, size),
        "hist_counts": counts, "hist_edges": edges,
        "maximum": values.max(dim=0).values.double().numpy(), "minimum": values.min(dim=0).values.double().numpy(),
        "mean": values.mean(dim=0).double().numpy(),
        "map_shape": np.asarray(shape if shape else (0, 0), dtype=np.int64),
    }


def style_vectors(a: Tensor) -> Tensor:
    """Unit-length vectors whose dot products are the similarities the diversity term compares:
    the flattened Gram matrix of a map [B, C, H, W], the unit vector itself for [B, N]."""
    if a.dim() == 4:
        flat = a.flatten(2)
        vectors = (flat @ flat.transpose(1, 2) / flat.shape[2]).flatten(1)
    else:
        vectors = a.flatten(1)
    return vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _degree_of(a: Tensor, units: Tensor) -> Tensor:
    picked = a[torch.arange(a.shape[0], device=a.device), units.to(a.device)]
    return picked.flatten(1).sum(dim=1) if picked.dim() > 1 else picked


def diversity_objective(layer: str, units: Sequence[int], free: int, reference: Tensor, scale: Tensor,
                        weight: float) -> ascent.Objective:
    """Samples are ``free`` members per unit (unit-major); member b scores ``a^k(x_b)`` minus
    ``weight * scale[u] *`` its mean cosine to the unit's other members and to ``reference[u]``
    (the fixed x*'s style vector)."""
    unit_of = torch.as_tensor(units, dtype=torch.long).repeat_interleave(free)
    others = free  # the other free members and x*

    def fn(acts):
        a = acts[layer]
        score = _degree_of(a, unit_of)
        vectors = style_vectors(a).view(len(units), free, -1)
        cos = vectors @ vectors.transpose(1, 2)
        to_members = cos.sum(dim=2) - cos.diagonal(dim1=1, dim2=2)
        to_star = (vectors * reference.to(a.device)[:, None, :]).sum(dim=2)
        mean_cos = ((to_members + to_star) / others).flatten()
        return score - weight * scale.to(a.device).repeat_interleave(free) * mean_cos

    return ascent.Objective(fn, {layer}, f"diversity({layer!r}, {len(units)} units x {free})",
                            batch=len(units) * free)


@torch.no_grad()
def measure(model: nn.Module, layer: str, images: Tensor, units: Tensor) -> tuple[Tensor, Tensor]:
    """``a^k`` of each image's own unit [B] and the images' style vectors [B, D], with the real
    network (no leak, no transforms)."""
    with ascent.frozen(model), ascent.capture(model, [layer]) as acts:
        a = acts.run(as_unit_images(images.to(model_device(model))))[layer].float()
    return _degree_of(a, units).cpu(), style_vectors(a).cpu()


def mean_pairwise_cosine(vectors: Tensor) -> float:
    """Mean cosine over the distinct pairs of a set's unit-length style vectors [k, D]."""
    k = vectors.shape[0]
    if k < 2:
        return float("nan")
    cos = vectors @ vectors.T
    return float((cos.sum() - cos.diagonal().sum()) / (k * (k - 1)))


def _groups(model: nn.Module, layer: str, shape, parameterization: str, memory_mb: float, per_unit: int,
            units: Sequence[int], seed: int) -> list[list[int]]:
    """``units`` in groups whose ``per_unit`` samples each fit in ``memory_mb`` together."""
    fit = ascent.estimate_max_batch(model, [layer], image_spec(shape, parameterization), memory_mb, seed=seed)
    size = max(1, fit // per_unit)
    return [list(units[i:i + size]) for i in range(0, len(units), size)]


def _ascend(model, objective, shape, indices, settings, start=None):
    transforms = (ascent.Jitter(settings["jitter"]),) if settings["jitter"] > 0 else ()
    return ascent.ascend(model, objective, image_spec(shape, settings["parameterization"], start), indices=indices,
                         steps=settings["steps"], lr=settings["lr"], optimizer="adam", transforms=transforms,
                         seed=settings["seed"], progress=settings.get("progress", False)).images


def xstar_and_diverse(model: nn.Module, layer: str, units: Sequence[int], shape, settings) -> tuple[Tensor, Tensor]:
    """For every unit: its lone x* (the filters stage's search: sample index = the unit, so x*
    does not depend on which chunk holds the unit) and ``settings["diverse"]`` - 1 more members
    ascended together under the diversity term, x* fixed among them. Returns images
    [U, k, C, H, W] (member 0 = x*) in [0, 1] and ``a^k`` of each member [U, k] without the leak.

    ``settings``: steps, lr, parameterization, jitter, leak, memory_mb, seed, diverse,
    diversity (the weight), progress."""
    units = [int(u) for u in units]
    k, leak = int(settings["diverse"]), float(settings["leak"])
    parameterization, memory = settings["parameterization"], float(settings["memory_mb"])
    stars, sets = [], []
    with leaky_relus(model, leak):
        for group in _groups(model, layer, shape, parameterization, memory, 1, units, settings["seed"]):
            stars.append(_ascend(model, [ascent.channel(layer, u) for u in group], shape, group, settings))
    star = torch.cat(stars)
    star_values, star_vectors = measure(model, layer, star, torch.as_tensor(units))
    if k > 1:
        free = k - 1
        with leaky_relus(model, leak):
            for group in _groups(model, layer, shape, parameterization, memory, free, units, settings["seed"]):
                rows = [units.index(u) for u in group]
                objective = diversity_objective(layer, group, free, star_vectors[rows],
                                                star_values[rows].abs(), float(settings["diversity"]))
                indices = [m * _MEMBER_STRIDE + u for u in group for m in range(1, k)]
                sets.append(_ascend(model, objective, shape, indices, settings).view(len(group), free, *star.shape[1:]))
        images = torch.cat([star[:, None], torch.cat(sets)], dim=1)
    else:
        images = star[:, None]
    member_units = torch.as_tensor(units).repeat_interleave(k)
    values, _ = measure(model, layer, images.flatten(0, 1), member_units)
    return images, values.view(len(units), k)


def set_similarity(model: nn.Module, layer: str, images: Tensor) -> Tensor:
    """Mean pairwise cosine of the members' style vectors, per unit of ``images`` [U, k, C, H, W]."""
    flat = images.flatten(0, 1)
    _, vectors = measure(model, layer, flat, torch.zeros(len(flat), dtype=torch.long))
    vectors = vectors.view(images.shape[0], images.shape[1], -1)
    return torch.tensor([mean_pairwise_cosine(v) for v in vectors])
