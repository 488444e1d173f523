"""Sample photos bundled with scikit-image, so DeepDream and style transfer work offline."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from cnnpipe.io.images import save_png

# name -> scikit-image loader; real photos shipped inside the scikit-image wheel.
SAMPLE_PHOTOS = {
    "astronaut": "astronaut",
    "chelsea": "chelsea",
    "coffee": "coffee",
    "hubble_deep_field": "hubble_deep_field",
    "ihc": "immunohistochemistry",
    "rocket": "rocket",
}


def sample_photo(name: str) -> Image.Image:
    """One bundled photo as an RGB image."""
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"sample photo {name!r} is not one of {sorted(SAMPLE_PHOTOS)}")
    import skimage.data

    array = np.asarray(getattr(skimage.data, SAMPLE_PHOTOS[name])())
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    return Image.fromarray(array.astype(np.uint8), mode="RGB")


def export_sample_photo(name: str, path: str | os.PathLike) -> None:
    save_png(sample_photo(name), path)
