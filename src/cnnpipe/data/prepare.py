"""Prepare a dataset once, then load it: ``prepare_dataset`` turns any supported dataset into
the same two files:

* a ``torch.save`` dict of uint8 images [N, C, H, W] and int64 labels for train and test;
* a JSON manifest with class names, image shape, counts, per-channel normalization
  (computed on the train images) and the seed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnpipe.data.download import CLASS_NAMES, DESCRIPTIONS, _load_cifar10, _load_idx_dataset, fetch
from cnnpipe.io.files import read_json, torch_save, write_json

DATASETS = ("digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "imagefolder")
DEFAULT_TEST_FRACTION = 0.2
TENSOR_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
MANIFEST_KEYS = ("dataset", "classes", "image_shape", "counts", "normalization", "seed", "source")
_RESIZE_CHUNK = 4096


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    counts = np.bincount(labels)
    try:
        train_idx, test_idx = train_test_split(
            np.arange(len(labels)),
            test_size=test_fraction,
            # sklearn accepts only seeds in [0, 2**32)
            random_state=seed % 2**32,
            stratify=labels,
        )
    except ValueError as exc:
        raise ValueError(
            f"dataset.test_fraction={test_fraction}: cannot split {what} ({len(labels)} images in "
            f"{len(counts)} classes, smallest class has {counts.min()}) into stratified train/test sets: {exc}"
        ) from exc
    return np.sort(train_idx), np.sort(test_idx)


def _load_digits(test_fraction: float, seed: int) -> tuple[dict[str, torch.Tensor], list[str]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]
    labels = bunch.target.astype(np.int64)
    train_idx, test_idx = _stratified_split(labels, test_fraction, seed, "scikit-learn digits")
    tensors = {
        "train_images": torch.from_numpy(images[train_idx]),
        "train_labels": torch.from_numpy(labels[train_idx]),
        "test_images": torch.from_numpy(images[test_idx]),
        "test_labels": torch.from_numpy(labels[test_idx]),
    }
    return tensors, [str(digit) for digit in range(10)]


def _load_imagefolder(folder, channels: int, image_size: int | None, test_fraction: float, seed: int):
    from cnnpipe.io.images import ImageError, list_images, load_image, pil_to_tensor

    if folder is None:
        raise ValueError("dataset.folder: required when dataset.name is 'imagefolder'")
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset.folder does not exist or is not a folder")
    class_dirs = sorted((entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")), key=lambda entry: entry.name)
    if not class_dirs:
        raise ValueError(f"{root}: dataset.folder has no class subfolders (expected one subfolder per class)")
    if len(class_dirs) < 2:
        raise ValueError(f"{root}: dataset.folder has a single class subfolder ({class_dirs[0].name!r}); need at least 2 classes")
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    native_size = None
    broken: list[ImageError] = []
    for label, class_dir in enumerate(class_dirs):
        for path in list_images(class_dir):
            try:
                tensor = (pil_to_tensor(load_image(path, mode=mode)) * 255.0).round().to(torch.uint8)
            except ImageError as error:  # go on, to name every bad file at once
                broken.append(error)
                continue
            if image_size:
                tensor = _resize_uint8(tensor[None], image_size)[0]
            elif native_size is None:
                native_size = tuple(tensor.shape[1:])
            elif tuple(tensor.shape[1:]) != native_size:
                raise ValueError(
                    f"{path}: image is {tensor.shape[2]}x{tensor.shape[1]} but earlier images are "
                    f"{native_size[1]}x{native_size[0]}; set dataset.image_size to resize them all"
                )
            images.append(tensor)
            labels.append(label)
    if broken:
        listed = "\n".join(f"  {error}" for error in broken)
        raise ImageError(root, f"dataset.folder: {len(broken)} image file(s) cannot be read; fix or remove "
                               f"them:\n{listed}")
    stacked = torch.stack(images)
    label_array = np.asarray(labels, dtype=np.int64)
    train_idx, test_idx = _stratified_split(label_array, test_fraction, seed, f"image folder {root}")
    tensors = {
        "train_images": stacked[torch.from_numpy(train_idx)],
        "train_labels": torch.from_numpy(label_array[train_idx]),
        "test_images": stacked[torch.from_numpy(test_idx)],
        "test_labels": torch.from_numpy(label_array[test_idx]),
    }
    return tensors, [entry.name for entry in class_dirs]


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] to size x size (bilinear, antialiased), in chunks to bound memory."""
    if images.shape[-2:] == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], _RESIZE_CHUNK):
        chunk = images[start : start + _RESIZE_CHUNK].float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + _RESIZE_CHUNK] = resized.round().clamp(0, 255).to(torch.uint8)
    return out


def normalization_stats(images: torch.Tensor) -> dict[str, list[float]]:
    """Per-channel mean and (population) std of uint8 images [N, C, H, W] scaled to [0, 1].

    Sums come from a value histogram, so the result is exact and independent of order.
    """
    mean, std = [], []
    levels = torch.arange(256, dtype=torch.float64)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    for channel in range(images.shape[1]):
        histogram = torch.zeros(256, dtype=torch.int64)
        for start in range(0, images.shape[0], _RESIZE_CHUNK):
            values = images[start : start + _RESIZE_CHUNK, channel].reshape(-1).to(torch.int64)
            histogram += torch.bincount(values, minlength=256)
        weights = histogram.to(torch.float64)
        mu = float((weights * levels).sum()) / count
        var = max(float((weights * levels * levels).sum()) / count - mu * mu, 0.0)
        sigma = round(math.sqrt(var) / 255.0, 6)
        mean.append(round(mu / 255.0, 6))
        # A constant channel would make Normalize divide by zero; leave it unscaled instead.
        std.append(sigma if sigma > 0 else 1.0)
    return {"mean": mean, "std": std}


def _options(cfg: dict) -> dict:
    """Validated dataset options with defaults filled in."""
    if not isinstance(cfg, dict):
        raise ValueError(f"dataset: expected a mapping of settings, got {type(cfg).__name__}")
    name = cfg.get("name")
    if name not in DATASETS:
        raise ValueError(f"dataset.name: {name!r} is not one of {list(DATASETS)}")
    image_size = cfg.get("image_size")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 0):
        raise ValueError(f"dataset.image_size: expected a non-negative integer (0 or null = native size), got {image_size!r}")
    test_fraction = cfg.get("test_fraction", DEFAULT_TEST_FRACTION)
    if test_fraction is None:
        test_fraction = DEFAULT_TEST_FRACTION
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"dataset.test_fraction: expected a number strictly between 0 and 1, got {test_fraction!r}")
    channels = cfg.get("channels", 3)
    if channels is None:
        channels = 3
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"dataset.channels: {channels!r} is not one of [1, 3]")
    mirror = cfg.get("mirror")
    if mirror is not None and (not isinstance(mirror, str) or not mirror.strip()):
        raise ValueError(f"dataset.mirror: expected a base URL string or null, got {mirror!r}")
    return {
        "name": name,
        "image_size": image_size or None,
        "test_fraction": float(test_fraction),
        "channels": int(channels),
        "folder": cfg.get("folder"),
        "mirror": mirror or None,
    }


def prepare_dataset(cfg: dict, seed: int, cache_dir, data_path, manifest_path, sources: dict[str, str] | None = None) -> dict:
    """Fetch and prepare the dataset described by the ``dataset`` config section.

    Writes the tensors to ``data_path`` and the manifest to ``manifest_path`` (both atomic,
    byte-identical for the same config and seed) and returns the manifest. ``sources``
    ({filename: md5}) overrides the official checksums of downloadable datasets.
    """
    opts = _options(cfg)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    name = opts["name"]
    if name == "digits":
        tensors, classes = _load_digits(opts["test_fraction"], seed)
        source = f"scikit-learn load_digits (bundled, offline); stratified split, test_fraction={opts['test_fraction']}"
    elif name == "imagefolder":
        tensors, classes = _load_imagefolder(opts["folder"], opts["channels"], opts["image_size"], opts["test_fraction"], seed)
        source = f"image folder {opts['folder']}; stratified split, test_fraction={opts['test_fraction']}"
    else:
        files = fetch(name, cache_dir, mirror=opts["mirror"], sources=sources)
        if name == "cifar10":
            tensors, classes = _load_cifar10(files)
        else:
            tensors, classes = _load_idx_dataset(name, files), list(CLASS_NAMES[name])
        source = DESCRIPTIONS[name]
    if opts["image_size"]:
        for key in ("train_images", "test_images"):
            tensors[key] = _resize_uint8(tensors[key], opts["image_size"])
    # Fresh contiguous storage per tensor: torch.save would otherwise write whole parent buffers.
    tensors = {key: tensors[key].contiguous().clone() for key in TENSOR_KEYS}
    tensors["train_labels"] = tensors["train_labels"].long()
    tensors["test_labels"] = tensors["test_labels"].long()
    manifest = {
        "dataset": name,
        "classes": classes,
        "image_shape": list(tensors["train_images"].shape[1:]),
        "counts": {"train": int(tensors["train_labels"].shape[0]), "test": int(tensors["test_labels"].shape[0])},
        "normalization": normalization_stats(tensors["train_images"]),
        "seed": seed,
        "source": source,
    }
    torch_save(tensors, data_path)
    write_json(manifest_path, manifest)
    return manifest


def load_prepared(path) -> dict[str, torch.Tensor]:
    """The tensors written by :func:`prepare_dataset`, checked for keys, dtypes and shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prepared dataset file not found (run the download rule first)")
    try:
        data = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch.load raises many types for a damaged file
        raise ValueError(f"{path}: not a readable prepared dataset ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict) or any(key not in data for key in TENSOR_KEYS):
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: expected a dict with keys {list(TENSOR_KEYS)}, found {found}")
    for split in ("train", "test"):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"{path}: {split}_images must be a uint8 tensor [N, C, H, W]")
        if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 1:
            raise ValueError(f"{path}: {split}_labels must be an int64 tensor [N]")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{path}: {split} has {images.shape[0]} images but {labels.shape[0]} labels")
    if data["train_images"].shape[1:] != data["test_images"].shape[1:]:
        raise ValueError(
            f"{path}: train images {list(data['train_images'].shape[1:])} and test images "
            f"{list(data['test_images'].shape[1:])} differ in shape"
        )
    return {key: data[key] for key in TENSOR_KEYS}


def load_manifest(path) -> dict:
    """The manifest written by :func:`prepare_dataset`, checked for its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset manifest not found (run the download rule first)")
    try:
        manifest = read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ValueError(f"{path}: manifest lacks the keys {missing}")
    return manifest
