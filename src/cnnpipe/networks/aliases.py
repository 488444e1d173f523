"""Friendly layer names (``conv4_2``, ``stem``, ``mixed4c``, ``logits``) for a backbone's
qualified module names; ``resolve_layer`` and ``get_layer`` accept either kind. Every network
with a final ``nn.Linear`` calls it ``logits``.

Layer names worth knowing:

- ``efficientnet_lite0``/``efficientnet_lite1`` (timm): ``stem`` = ``bn1`` (1/2 of the input
  size), ``blocks.0`` ... ``blocks.6`` (stage outputs at 1/2, 1/4, 1/8, 1/16, 1/16, 1/32,
  1/32), ``blocks.S.B`` for block B of stage S, ``head`` = ``bn2``, ``logits`` = ``classifier``.
- torchvision VGGs: ``conv1_1`` ... ``conv5_4``, ``relu1_1`` ..., ``pool1`` ... ``pool5``,
  ``fc6`` ... ``fc8`` (= ``logits``), ``relu6``, ``relu7``. AlexNet the same way:
  ``conv1`` ... ``conv5``, ``fc6`` ... ``fc8``.
- ``googlenet``: ``conv1``, ``conv2``, ``conv3``, ``inception3a`` ... ``inception5b``
  (aliases ``mixed3a`` ... ``mixed5b``, Lucid's names), ``logits`` = ``fc``.

``python -m cnnpipe layers <spec>`` lists every layer of a network with its output shape."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import torchvision
from torch import nn
from torchvision.models.googlenet import Inception

from cnnpipe.networks.spec import DEFAULT_LAYERS, BackboneSpec

# The layer whose outputs are the class scores y^i: the trained CNN's module name, and an
# alias that every ImageNet backbone resolves (classifier, classifier.6, fc).
SCORES_LAYER = "logits"


def default_layers(model: nn.Module) -> Mapping[str, object] | None:
    """The dream, content and style layers chosen for ``model``'s architecture, if any."""
    spec = getattr(model, "backbone_spec", None)
    return DEFAULT_LAYERS.get(spec.arch) if spec is not None else None


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
