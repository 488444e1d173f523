"""Downloads of the torchvision datasets (MNIST, Fashion-MNIST, KMNIST, CIFAR-10) and readers
of their raw files.

Downloads go to ``cache_dir/<dataset>/<file>``; a file is used only after its MD5 matches,
and a cached file with the right MD5 is never downloaded again. Raw files are parsed here
directly (IDX, CIFAR pickles inside the tar.gz) so nothing is extracted to disk."""

from __future__ import annotations

import gzip
import math
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv_datasets

# re-exported: fetch raises them, and callers catch them from here
from cnnpipe.io.download import ChecksumError as ChecksumError
from cnnpipe.io.download import DownloadError as DownloadError
from cnnpipe.io.download import download

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_CIFAR_FOLDER = tv_datasets.CIFAR10.base_folder
_CIFAR_TRAIN = tuple(name for name, _ in tv_datasets.CIFAR10.train_list)
_CIFAR_TEST = tuple(name for name, _ in tv_datasets.CIFAR10.test_list)
_CIFAR_META = tv_datasets.CIFAR10.meta["filename"]


def _build_sources() -> dict[str, dict]:
    """Official mirrors and MD5s, read from torchvision so they stay in step with it."""
    sources = {}
    for name, cls in (("mnist", tv_datasets.MNIST), ("fashion_mnist", tv_datasets.FashionMNIST), ("kmnist", tv_datasets.KMNIST)):
        sources[name] = {"mirrors": list(cls.mirrors), "files": dict(cls.resources)}
    cifar = tv_datasets.CIFAR10
    sources["cifar10"] = {
        "mirrors": [cifar.url.rsplit("/", 1)[0] + "/"],
        "files": {cifar.filename: cifar.tgz_md5},
    }
    return sources


SOURCES: dict[str, dict] = _build_sources()


def _join_url(base: str, filename: str) -> str:
    return base.rstrip("/") + "/" + filename


def fetch(name: str, cache_dir, mirror: str | None = None, sources: dict[str, str] | None = None) -> dict[str, Path]:
    """Download (or reuse from ``cache_dir``) the raw files of dataset ``name``.

    ``mirror`` replaces the official base URLs; ``sources`` ({filename: md5}) replaces the
    official checksums (tests serve small generated files this way). Returns {filename: path}.
    """
    if name not in SOURCES:
        raise ValueError(f"dataset.name: {name!r} has no downloadable files; downloadable are {sorted(SOURCES)}")
    expected = dict(SOURCES[name]["files"])
    if sources is not None:
        missing = sorted(set(expected) - set(sources))
        if missing:
            raise ValueError(f"sources for dataset {name!r} lack the files {missing} (need {sorted(expected)})")
        expected = {filename: str(sources[filename]).lower() for filename in expected}
    if mirror is not None and (not isinstance(mirror, str) or not mirror.strip()):
        raise ValueError(f"dataset.mirror: expected a base URL string or null, got {mirror!r}")
    bases = [mirror] if mirror else list(SOURCES[name]["mirrors"])
    folder = Path(cache_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    return {filename: _fetch_file(folder, filename, md5, bases) for filename, md5 in expected.items()}


def _fetch_file(folder: Path, filename: str, md5: str, bases: list[str]) -> Path:
    urls = [_join_url(base, filename) for base in bases]
    # the dataset downloads always showed torchvision's progress bar; they still do
    return download(urls, folder / filename, algorithm="md5", expected=md5, progress=True)


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed) as a numpy array."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from exc
    if len(raw) < 4 or raw[0:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: IDX header is truncated or has no dimensions")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    if len(raw) - header != math.prod(dims):
        raise ValueError(f"{path}: IDX dimensions {list(dims)} need {math.prod(dims)} bytes, file has {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _load_idx_dataset(name: str, files: dict[str, Path]) -> dict[str, torch.Tensor]:
    arrays = {}
    for key, filename in _IDX_FILES.items():
        path = files[filename]
        array = _read_idx(path)
        if key.endswith("images") and array.ndim != 3:
            raise ValueError(f"{path}: expected images [N, H, W], got dimensions {list(array.shape)}")
        if key.endswith("labels") and array.ndim != 1:
            raise ValueError(f"{path}: expected labels [N], got dimensions {list(array.shape)}")
        arrays[key] = array
    return check_split(name, {
        "train_images": torch.from_numpy(arrays["train_images"][:, None]),
        "train_labels": torch.from_numpy(arrays["train_labels"]).long(),
        "test_images": torch.from_numpy(arrays["test_images"][:, None]),
        "test_labels": torch.from_numpy(arrays["test_labels"]).long(),
    }, len(CLASS_NAMES[name]), files[_IDX_FILES["train_images"]].parent)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a mirror cannot run code here."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "bytearray"),
        # protocol-2 pickles written by Python 3 spell bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"),
        ("__builtin__", "bytearray"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_cifar_member(archive: tarfile.TarFile, path: Path, member: str) -> dict:
    full = f"{_CIFAR_FOLDER}/{member}"
    try:
        handle = archive.extractfile(full)
    except KeyError:
        handle = None
    if handle is None:
        raise ValueError(f"{path}: archive has no file {full!r}")
    try:
        entry = _ArrayUnpickler(handle, encoding="latin1").load()
    except Exception as exc:  # pickle raises many types for damaged data
        raise ValueError(f"{path}: cannot read {full!r} ({type(exc).__name__}: {exc})") from exc
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: {full!r} does not hold a dict")
    return entry


def _cifar_batches(archive: tarfile.TarFile, path: Path, members: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for member in members:
        entry = _read_cifar_member(archive, path, member)
        data = np.asarray(entry.get("data"))
        batch_labels = np.asarray(entry.get("labels"), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{path}: {member}: 'data' must be uint8 [N, 3072], got {data.dtype} {list(data.shape)}")
        if batch_labels.shape != (data.shape[0],):
            raise ValueError(f"{path}: {member}: {batch_labels.size} labels for {data.shape[0]} images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _load_cifar10(files: dict[str, Path]) -> tuple[dict[str, torch.Tensor], list[str]]:
    (path,) = files.values()
    try:
        archive = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable tar.gz archive ({exc})") from exc
    with archive:
        meta = _read_cifar_member(archive, path, _CIFAR_META)
        classes = [str(label) for label in meta.get("label_names", [])]
        if len(classes) != 10:
            raise ValueError(f"{path}: {_CIFAR_META} should list 10 label_names, found {len(classes)}")
        train_images, train_labels = _cifar_batches(archive, path, _CIFAR_TRAIN)
        test_images, test_labels = _cifar_batches(archive, path, _CIFAR_TEST)
    tensors = {"train_images": train_images, "train_labels": train_labels, "test_images": test_images, "test_labels": test_labels}
    return check_split("cifar10", tensors, len(classes), path), classes


CLASS_NAMES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion_mnist": list(tv_datasets.FashionMNIST.classes),
    "kmnist": list(tv_datasets.KMNIST.classes),
}
DESCRIPTIONS = {
    "mnist": "MNIST (official IDX files, MD5-verified; official train/test split)",
    "fashion_mnist": "Fashion-MNIST (official IDX files, MD5-verified; official train/test split)",
    "kmnist": "KMNIST (official IDX files, MD5-verified; official train/test split)",
    "cifar10": "CIFAR-10 (official python tar.gz, MD5-verified; official train/test split)",
}


def check_split(name: str, tensors: dict[str, torch.Tensor], num_classes: int, where) -> dict[str, torch.Tensor]:
    for split in ("train", "test"):
        images, labels = tensors[f"{split}_images"], tensors[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{where}: {name} {split} split has {images.shape[0]} images but {labels.shape[0]} labels")
        if images.shape[0] == 0:
            raise ValueError(f"{where}: {name} {split} split is empty")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"{where}: {name} {split} labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    return tensors
