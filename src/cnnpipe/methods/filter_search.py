"""The search behind the filters stage and the atlas: per-unit activation maximization.

``x*_k = argmax_x a^k(x)`` for every unit k of a layer in ONE batched ascent
(``cnnpipe.ascent.render_batched`` with one ``channel(layer, k)`` per sample, which the engine
fuses into a single gather); the degree of activation ``a^k`` of every unit over a set of
images (one forward that stops at the layer); the leaky ReLUs that give a silent unit a
gradient; and the data start that ascends again from the best reference image where the
ascent from noise falls short. The stage (``cnnpipe.stages.filters``) and the atlas
(``cnnpipe.stages.atlas``) add their tables, figures and pages."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnpipe import ascent
from cnnpipe.runtime.device import model_device

PARAMETERIZATIONS = ("pixel", "fft")
# The trained CNN's layer -> the activation after it: convN -> reluN, fcN -> fc_reluN.
_ACTIVATION_OF = {re.compile(r"conv(\d+)"): "relu{}", re.compile(r"fc(\d+)"): "fc_relu{}"}


def feature_map_layer(model: nn.Module, layer: str, key: str = "filters.layers") -> str:
    """The module whose output is maximized: ``reluN`` for the trained CNN's ``convN`` and
    ``fc_reluN`` for its hidden ``fcN`` (their activations), the layer itself otherwise (an
    alias is resolved for a backbone)."""
    if hasattr(model, "layer_aliases"):
        from cnnpipe.networks.aliases import resolve_layer

        try:
            return resolve_layer(model, layer)
        except ValueError as error:
            raise ValueError(f"{key}: {error}") from None
    for pattern, activation in _ACTIVATION_OF.items():
        match = pattern.fullmatch(layer)
        if match and hasattr(model, "conv_layer_names"):
            if pattern.pattern.startswith("conv") and layer not in model.conv_layer_names():
                raise ValueError(f"{key}: {layer!r} is not a convolution layer of the CNN "
                                 f"(it has {model.conv_layer_names()})")
            ascent.get_layer(model, layer)
            activation = activation.format(match.group(1))
            ascent.get_layer(model, activation)  # a clear error if the block has no ReLU
            return activation
    ascent.get_layer(model, layer)
    return layer


def _degrees(acts: Mapping[str, Tensor], layer: str) -> Tensor:
    """[B, C]: a^k summed over positions for a feature map [B, C, H, W]; a fully connected
    layer's units [B, N] as they are (a^j of neuron j)."""
    out = acts[layer]
    if torch.is_tensor(out) and out.dim() == 4:
        return out.sum(dim=(2, 3))
    if torch.is_tensor(out) and out.dim() == 2:
        return out
    shape = tuple(out.shape) if torch.is_tensor(out) else type(out).__name__
    raise ValueError(f"layer {layer!r} gives {shape}, not a feature map [B, C, H, W] or units [B, N] to maximize")


@torch.no_grad()
def has_units(model: nn.Module, layer: str, image: Tensor) -> bool:
    """Whether ``layer`` gives units [B, N] (a fully connected layer) rather than a feature map,
    for one image [C, H, W] in [0, 1]."""
    with ascent.frozen(model), ascent.capture(model, [layer]) as acts:
        return acts.run(as_unit_images(image[None].to(model_device(model))))[layer].dim() == 2


@torch.no_grad()
def layer_activations(model: nn.Module, layer: str, images: Tensor, *, batch_size: int = 256) -> Tensor:
    """Degree of activation ``a^k = sum_ij a^k_ij`` of every channel of ``layer`` (or the
    activation of every unit of a fully connected layer) for every image: [N, C] float32 on the CPU. ``images`` [N, C, H, W] in [0, 1] (uint8 is divided by
    255) go through the model in chunks; the forward stops at ``layer``."""
    device = model_device(model)
    rows = []
    with ascent.frozen(model), ascent.capture(model, [layer]) as acts:
        for start in range(0, len(images), batch_size):
            chunk = as_unit_images(images[start:start + batch_size].to(device))
            rows.append(_degrees(acts.run(chunk), layer).float().cpu())
    if not rows:
        raise ValueError(f"layer_activations: no images given for layer {layer!r}")
    return torch.cat(rows)


def dataset_max(model: nn.Module, layer: str, images: Tensor, **kwargs) -> Tensor:
    """The largest ``a^k`` over ``images``, per channel k: [C]."""
    return layer_activations(model, layer, images, **kwargs).max(dim=0).values


@contextmanager
def leaky_relus(model: nn.Module, leak: float) -> Iterator[nn.Module]:
    """Inside the block every ``nn.ReLU`` of ``model`` computes ``leaky_relu(x, leak)``.

    Each module's ``forward`` is replaced on the instance and restored on exit, so the model
    is not copied, hooks on the modules (``ascent.capture``) still work, and the plain ReLU
    is not computed as well.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)] if leak > 0 else []
    for module in relus:
        module.forward = functools.partial(F.leaky_relu, negative_slope=float(leak))
    try:
        yield model
    finally:
        for module in relus:
            del module.forward  # back to the class's ReLU.forward


def prepare_model(model: nn.Module, device=None) -> nn.Module:
    """Move ``model`` to ``device`` in channels-last memory format, in place.

    Its feature maps are then [B, H, W, C] in memory: CPU max pooling over such maps runs
    about ten times faster than over [B, C, H, W] ones (measured here: 0.14 vs 1.6 ms for a
    32 x 16 x 28 x 28 batch), which is most of what a batch of small images costs.
    """
    return model.to(device=device, memory_format=torch.channels_last)


def image_spec(shape: Sequence[int], parameterization: str = "pixel", images: Tensor | None = None):
    """The engine's start-image recipe: clipped pixels from grey + seeded noise, or Fourier;
    from ``images`` ([K, C, H, W] in [0, 1], one per sample) instead of noise when given."""
    if parameterization == "pixel":
        return ascent.pixel_image(tuple(shape), images=images)
    if parameterization == "fft":
        return ascent.fft_image(tuple(shape), images=images)
    raise ValueError(f"filters.parameterization: {parameterization!r} is not one of {list(PARAMETERIZATIONS)}")


def maximize_filters(
    model: nn.Module,
    layer: str,
    filters: Sequence[int],
    image_shape: Sequence[int],
    *,
    steps: int = 200,
    lr: float = 0.05,
    parameterization: str = "pixel",
    jitter: float = 0.0,
    leak: float = 0.01,
    memory_mb: float | None = 1024,
    seed: int = 0,
    device=None,
    progress: bool = True,
    start_images: Tensor | None = None,
) -> ascent.AscentResult:
    """``x*_k = argmax_x a^k(x)`` for every k in ``filters`` of ``layer`` (the module whose
    output is maximized, e.g. ``relu2``), all in one batched ascent.

    Sample i (filter ``filters[i]``) draws its start noise and jitter from ``(seed, i)``;
    ``memory_mb`` bounds one chunk (see ``ascent.estimate_max_batch``), which does not change
    the results. ``leak``: see ``leaky_relus``. ``start_images`` [K, C, H, W] in [0, 1]: start
    sample i from image i instead of noise. Returns the engine's result: images [K, C, H, W]
    in [0, 1], and its objective, measured with the leak.
    """
    filters = [int(k) for k in filters]
    if not filters:
        raise ValueError(f"maximize_filters: no filters given for layer {layer!r}")
    transforms = (ascent.Jitter(jitter),) if jitter > 0 else ()
    with leaky_relus(model, leak):
        return ascent.render_batched(
            model,
            [ascent.channel(layer, k) for k in filters],
            image_spec(image_shape, parameterization, start_images),
            memory_mb=memory_mb,
            seed=seed,
            device=device,
            progress=progress,
            steps=steps,
            lr=lr,
            optimizer="adam",
            transforms=transforms,
        )


def square_image(photo, image_size: int, channels: int = 3) -> Tensor:
    """A PIL image centre-cropped square and resized: [C, S, S] in [0, 1] (gray, as PIL
    converts it, for ``channels`` 1)."""
    from PIL import Image

    from cnnpipe.io.images import pil_to_tensor

    side = min(photo.size)
    left, top = (photo.width - side) // 2, (photo.height - side) // 2
    square = photo.crop((left, top, left + side, top + side)).convert("L" if channels == 1 else "RGB")
    return pil_to_tensor(square.resize((image_size, image_size), Image.Resampling.LANCZOS))


def reference_photos(image_size: int, channels: int = 3) -> Tensor:
    """scikit-image's bundled photos, centre-cropped square and resized: [N, C, S, S] in [0, 1]
    (gray, as PIL converts it, for a 1-channel network)."""
    from cnnpipe.io.photos import SAMPLE_PHOTOS, sample_photo

    return torch.stack([square_image(sample_photo(name), image_size, channels) for name in sorted(SAMPLE_PHOTOS)])


def as_unit_images(images: Tensor) -> Tensor:
    """Images as float in [0, 1] (uint8 is divided by 255)."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def data_start_where_short(ascend, model: nn.Module, layer: str, filters: Sequence[int], images: Tensor,
                           activation: Tensor, reference: Tensor, reference_acts: Tensor
                           ) -> tuple[Tensor, Tensor, list[str]]:
    """For each filter whose x* (``images``, with ``activation`` a^k) does not beat every
    reference image, ascend again from the reference image with the largest a^k and keep that
    result where it ends higher. ``ascend(filters, start_images=...)`` runs the ascent;
    ``reference_acts`` [N, C] are the reference images' a^k. Returns (images, activations,
    start names), measured with the real ReLUs by the same forward as the data."""
    images, activation = images.clone(), activation.clone()
    start = ["noise"] * len(filters)
    maxima, best = reference_acts.max(dim=0)
    short = [i for i, k in enumerate(filters) if not activation[i] > maxima[k]]
    if not short:
        return images, activation, start
    ks = [filters[i] for i in short]
    again = ascend(ks, start_images=as_unit_images(reference[best[ks]])).images
    again_acts = layer_activations(model, layer, again)[torch.arange(len(ks)), torch.as_tensor(ks)]
    for j, i in enumerate(short):
        if again_acts[j] > activation[i]:
            images[i], activation[i], start[i] = again[j], again_acts[j], "data"
    return images, activation, start
