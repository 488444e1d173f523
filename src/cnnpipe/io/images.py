"""Safe image I/O shared by DeepDream, style transfer and the imagefolder dataset.

``load_image`` turns whatever a user drops into a folder (rotated phone JPEGs, palette
PNGs with transparency, CMYK, 16-bit grayscale, RGBA) into a plain, fully loaded "RGB"
or "L" image, or raises :class:`ImageError` whose message starts with the file's path."""

from __future__ import annotations

import io
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from cnnpipe.io.files import atomic_write_bytes, umask

if TYPE_CHECKING:  # torch is imported where tensors are made, so the Snakefile can import this cheaply
    import torch
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MODES = ("RGB", "L")
DEFAULT_MAX_PIXELS = 64_000_000
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageError(ValueError):
    """An image file that cannot be used; the message starts with the file's path."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def load_image(
    path: str | os.PathLike, mode: str = "RGB", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Open ``path`` fully, apply EXIF orientation and convert to ``mode`` ("RGB" or "L").

    Transparent pixels are composited on white; 16-bit grayscale is scaled to 8 bits.
    Images with more than ``max_pixels`` pixels are refused (None disables the guard).
    """
    if mode not in MODES:
        raise ValueError(f"load_image: mode {mode!r} is not one of {list(MODES)}")
    path = Path(path)
    if not path.exists():
        raise ImageError(path, "file not found")
    if not path.is_file():
        raise ImageError(path, "not a regular file")
    try:
        with warnings.catch_warnings():
            # PIL only warns for moderately oversized images; treat that as the bomb it may be.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                width, height = opened.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageError(
                        path,
                        f"image is {width}x{height} = {width * height} pixels, more than "
                        f"max_pixels={max_pixels} (refused as a possible decompression bomb)",
                    )
                opened.load()
                image = ImageOps.exif_transpose(opened)
                image = _convert(image, mode)
                image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, f"refused as a possible decompression bomb ({exc})") from exc
    except Exception as exc:  # PIL's plugins raise many unrelated types for bad files
        raise ImageError(path, f"cannot read image ({type(exc).__name__}: {exc})") from exc
    return image


def _convert(image: Image.Image, mode: str) -> Image.Image:
    """Any PIL mode to "RGB" or "L", with alpha composited on white."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # "I" usually holds 16-bit samples (PNG/TIFF); a plain convert("L") would clip them.
        values = np.asarray(image, dtype=np.float64)
        gray = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        image = Image.fromarray(gray)
    elif image.mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
    has_alpha = image.mode in _ALPHA_MODES or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba).convert("RGB")
    elif image.mode not in ("RGB", "L"):
        # P, 1, CMYK, YCbCr, RGBX, ...: PIL converts these to RGB directly.
        image = image.convert("RGB")
    if image.mode != mode:
        image = image.convert(mode)
    image.info.clear()
    return image


def list_images(folder: str | os.PathLike, extensions: Iterable[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """The image files directly inside ``folder`` (by extension, case-insensitive), sorted by name.

    Hidden files (leading dot, e.g. macOS ``._x.jpg``) are skipped. A missing folder or a
    folder without images is an error, never an empty list.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: image folder not found")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: not a folder")
    wanted = {ext.lower() if ext.startswith(".") else "." + ext.lower() for ext in extensions}
    found = [
        entry
        for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".") and entry.suffix.lower() in wanted
    ]
    if not found:
        raise ImageError(folder, f"no images found (looked for {', '.join(sorted(wanted))})")
    return sorted(found, key=lambda entry: entry.name)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An "L" or "RGB" image as a float tensor [C, H, W] in [0, 1]."""
    if img.mode not in MODES:
        raise ValueError(f"pil_to_tensor: image mode {img.mode!r} is not one of {list(MODES)}; use load_image")
    array = np.array(img, dtype=np.uint8, copy=True)
    if array.ndim == 2:
        array = array[None]
    else:
        array = array.transpose(2, 0, 1)
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)


def tensor_to_pil(t: torch.Tensor) -> Image.Image:
    """A tensor [C, H, W] (C = 1 or 3; also [H, W] or [1, C, H, W]) as an image.

    Floats are read as [0, 1], clamped and rounded; uint8 is taken as is; NaN becomes 0.
    """
    import torch

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"tensor_to_pil: expected a torch.Tensor, got {type(t).__name__}")
    t = t.detach().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"tensor_to_pil: expected shape [C, H, W] with C in (1, 3), got {list(t.shape)}")
    if t.dtype != torch.uint8:
        t = torch.nan_to_num(t.float(), nan=0.0).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    array = t.permute(1, 2, 0).contiguous().numpy()
    if array.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(array[:, :, 0]))
    return Image.fromarray(array)


def save_png(image: torch.Tensor | Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` (tensor [C, H, W] in [0, 1] or PIL image) as PNG, atomically.

    No metadata is written (no text chunks, ICC profile or EXIF), so equal pixels give equal bytes.
    """
    img = image if isinstance(image, Image.Image) else tensor_to_pil(image)
    if not isinstance(img, Image.Image):
        raise TypeError(f"save_png: expected a tensor or PIL image for {path}, got {type(image).__name__}")
    if img.mode not in ("L", "RGB", "RGBA", "LA"):
        img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
    # A fresh image from the raw pixels carries none of the source's info (ICC, EXIF, text).
    clean = Image.frombytes(img.mode, img.size, img.tobytes())
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=6)
    return atomic_write_bytes(path, buffer.getvalue())


def resize_to_fit(img: Image.Image, max_side: int, upscale: bool = False) -> Image.Image:
    """Scale ``img`` so its longer side is ``max_side``, keeping the aspect ratio (LANCZOS).

    Smaller images are left as they are unless ``upscale`` is true.
    """
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"resize_to_fit: max_side must be a positive integer, got {max_side!r}")
    width, height = img.size
    longest = max(width, height)
    if longest == max_side or (longest < max_side and not upscale):
        return img.copy()
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def file_stems(names: Iterable[str]) -> list[str]:
    """A safe, unique file name stem per name, in order: characters other than letters, digits,
    ``.``, ``-`` and ``_`` become ``_`` ("golden retriever" -> "golden_retriever"); a stem that
    repeats (ImageNet has two classes called "crane") gets ``-2``, ``-3``, ... appended."""
    stems: list[str] = []
    seen: set[str] = set()
    for name in names:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "image"
        unique, n = stem, 1
        while unique.lower() in seen:  # case-insensitive file systems too
            n += 1
            unique = f"{stem}-{n}"
        seen.add(unique.lower())
        stems.append(unique)
    return stems


def write_image_folder(images: torch.Tensor, names: Iterable[str], folder: str | os.PathLike) -> list[Path]:
    """Save each image [C, H, W] of ``images`` as ``folder/<name>.png`` (8-bit, lossless), the
    names made safe by :func:`file_stems`. The folder appears whole or not at all: it is written
    beside its final place and renamed, replacing an older one. Returns the files' paths."""
    folder = Path(folder)
    names = file_stems(names)
    if len(names) != len(images):
        raise ValueError(f"write_image_folder: {len(images)} images but {len(names)} names for {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for image, name in zip(images, names):
            save_png(image, staging / f"{name}.png")
        os.chmod(staging, 0o777 & ~umask())
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [folder / f"{name}.png" for name in names]


def read_images(paths: Iterable[str | os.PathLike], mode: str) -> torch.Tensor:
    """The images at ``paths`` as one tensor [N, C, H, W] in [0, 1] (they must share a size)."""
    import torch

    return torch.stack([pil_to_tensor(load_image(path, mode=mode)) for path in paths])
