"""How colourful and how contrasted images are: information beside the pictures, never a target.

Mean saturation is HSV's (max - min) / max per pixel, averaged; contrast is the RMS contrast,
the standard deviation of the luminance (0.299 R + 0.587 G + 0.114 B) over the pixels. Both are
in [0, 1] for images in [0, 1]. A grey surround lowers both without harming a picture, so they
describe, they do not judge."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

# The bundled photos the images are compared with (real scenes, not textures or micrographs).
REFERENCE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
_LUMA = (0.299, 0.587, 0.114)


def colour_measures(images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean saturation [N], RMS contrast [N]) of images [N, 1 or 3, H, W] in [0, 1]."""
    images = torch.as_tensor(images).detach().float().cpu().clamp(0, 1)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"colour_measures takes images [N, 1 or 3, H, W], got {tuple(images.shape)}")
    images = images.expand(-1, 3, -1, -1)
    high, low = images.amax(dim=1), images.amin(dim=1)
    saturation = torch.where(high > 0, (high - low) / high.clamp_min(1e-8), torch.zeros_like(high))
    luma = torch.einsum("c,nchw->nhw", torch.tensor(_LUMA), images)
    return saturation.mean(dim=(1, 2)).numpy(), luma.std(dim=(1, 2)).numpy()


@lru_cache(maxsize=1)
def photo_colour() -> tuple[float, float]:
    """The mean saturation and RMS contrast of REFERENCE_PHOTOS (their means)."""
    from cnnpipe.io.photos import sample_photo

    photos = [torch.from_numpy(np.asarray(sample_photo(name), dtype=np.float32) / 255).permute(2, 0, 1)[None]
              for name in REFERENCE_PHOTOS]
    measures = [colour_measures(photo) for photo in photos]
    return (round(float(np.mean([s[0] for s, _ in measures])), 3),
            round(float(np.mean([c[0] for _, c in measures])), 3))
