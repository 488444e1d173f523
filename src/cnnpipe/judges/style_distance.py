"""How far a style transfer's result is from its style image, in an independent judge's eyes:
the judge's Gram matrices at its own style layers (:func:`cnnpipe.judges.specs.style_layers`,
not the generator's, so the measure is not the loss that was minimized), each image seen at
its own size (a Gram matrix does not depend on it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cnnpipe import ascent
from cnnpipe.judges.imagenet import ImageNetJudge
from cnnpipe.judges.specs import style_layers
from cnnpipe.methods.style.losses import gram_matrix
from cnnpipe.methods.style.names import blend_weights
from cnnpipe.networks.aliases import resolve_layer


@torch.no_grad()
def gram_matrices(judge: ImageNetJudge, image: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
    """Gram matrices [C, C] (``cnnpipe.methods.style.losses.gram_matrix``) of one image [3, H, W] in
    [0, 1], seen at its own size, at ``layers`` (names or aliases)."""
    names = [resolve_layer(judge.model, layer) for layer in layers]
    image = torch.as_tensor(image).float().cpu()[None]
    with ascent.frozen(judge.model), ascent.capture(judge.model, names) as acts:
        acts.run(image)
        return [gram_matrix(acts[name].float())[0] for name in names]


def style_distance(judge: ImageNetJudge, result: torch.Tensor, style, content: torch.Tensor,
                   layers: Sequence[str] | None = None, weights: Sequence[float] | None = None
                   ) -> dict[str, float]:
    """How far the result's style is from the style image's, in the judge's eyes: per layer
    the relative squared error of the result's Gram matrix to the style image's, divided
    by the same error of the content image (1 = as far as the content image, 0 = the
    style image's Gram matrix). Keys: the layers and ``mean``, the mean over them.
    ``style`` may be a list of images (a blend): the target is then the ``weights``-weighted
    mean of their Gram matrices (default equal weights)."""
    layers = list(style_layers(judge.spec) if layers is None else layers)
    if not layers:
        raise ValueError(f"style.judge: no layers known to measure style on {judge.kind!r}; judge with "
                         f"efficientnet_lite1, efficientnet_lite0, vgg19 or googlenet")
    grams = {name: gram_matrices(judge, image, layers) for name, image in
             (("result", result), ("content", content))}
    if isinstance(style, (list, tuple)):
        shares = blend_weights(weights, len(style))
        each = [gram_matrices(judge, image, layers) for image in style]
        grams["style"] = [sum(w * g[i] for w, g in zip(shares, each)) for i in range(len(layers))]
    else:
        grams["style"] = gram_matrices(judge, style, layers)
    distances = {}
    for layer, target, got, start in zip(layers, grams["style"], grams["result"], grams["content"]):
        # a ratio of two errors relative to one target: the target's size cancels
        before = max(float((start - target).square().mean()), 1e-30)
        distances[layer] = float((got - target).square().mean()) / before
    distances["mean"] = float(np.mean([distances[layer] for layer in layers]))
    return distances
